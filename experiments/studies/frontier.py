"""The quality-diversity frontier's library: its settings (FrontierConfig), the curves of each
model, the post-hoc guides, one grid cell per (seed, model) and the report's summary. The command
and what it does: experiments/frontier.py."""


from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from baselines.gpt2 import GPT
from datasets import build_tokenizer
from datasets.corpora import sha256_of
from experiments import jobs
from experiments.studies import comparison
from experiments.core import runtime
from experiments.core import config as cfglib
from experiments.core.checkpoint import load_checkpoint_under, save_checkpoint, write_text
from experiments.core.logger import RunLogger
from experiments.core.runlock import RunLock
from experiments.generators.families import FAMILIES, GANFamily, LMFamily
from experiments.generators.guidance import (FitCheckpoint, GuideConfig, GuidedSampler, Proposals, gan_discriminator,
                                             lm_discriminator, real_source, start_discriminator, train_guide)
from experiments.reporting import frontier as report
from gan.guided import DRS_MAX_COST


SOURCES = {"posthoc": "", "gan": " (GAN's D)", "gan_tuned": " (GAN's D, tuned)",  # curve-name suffixes
           "lm_tuned": " (LM's trunk, tuned)"}


@dataclass
class FrontierConfig:
    title: str = "The quality-diversity frontier"
    seeds: str = "1,2,3"                     # training seeds: one set of trained models each
    top_ps: str = "0.8,0.9,0.95"             # language models' nucleus curve (at T = 1); the temperature and
                                             # truncation curves are the comparison's temperatures and psis
    guided: str = "gpt2"                     # models that get a post-hoc discriminator and guided curves
    drs_gammas: str = "-1,0,1,2"             # discriminator rejection sampling's gamma (stricter upwards)
    drs_max_cost: float = DRS_MAX_COST       # DRS candidates per sample before a point is given up (skipped)
    sir_alphas: str = "0.5,1,2,4"            # SIR's strength alpha (0 = the base sampler)
    sir_m: int = 8                           # SIR's candidates per sample
    guide_sources: str = "posthoc,gan,gan_tuned"  # discriminators: one trained post hoc (every guided model);
                                             # a GAN's own, as is and fine-tuned (the gan family only); a
                                             # causal one from the guided GPT-2's own trunk (lm_tuned: GPT-2 only)
    planes: str = "bleu5:self_bleu5,lm_score:reverse_lm_score"  # quality:diversity axis pairs
    reference: str = "gpt2:temperature"      # the curve every other point is tested against
    table_dir: str = "runs/frontier"         # report.md, results.json and figures
    index: str = ""                          # a report over every frontier in index's folder (its */results.json),
                                             # rewritten after this one; "" = none

    def __post_init__(self):
        self.seed_list()
        if any(p > 1 for p in comparison.floats(self.top_ps, "top_ps")):
            raise ValueError(f"frontier.top_ps must be in (0, 1], got {self.top_ps!r}")
        comparison.floats(self.drs_gammas, "drs_gammas", positive=False)  # any real shift of the acceptance logit
        if any(a < 0 for a in comparison.floats(self.sir_alphas, "sir_alphas", positive=False)):
            raise ValueError(f"frontier.sir_alphas must be >= 0 (0 = the base sampler), got {self.sir_alphas!r}")
        if self.sir_m < 1:
            raise ValueError(f"frontier.sir_m must be >= 1, got {self.sir_m}")
        if self.drs_max_cost < 1:
            raise ValueError(f"frontier.drs_max_cost must be >= 1 candidate per sample, got {self.drs_max_cost}")
        for plane in self.plane_list():
            for axis in plane:
                if axis not in report.DIRECTION:
                    raise ValueError(f"frontier.planes: unknown metric {axis!r}; known: {sorted(report.DIRECTION)}")
        unknown = [x for x in self.guide_sources.split(",") if x.strip() and x.strip() not in SOURCES]
        if unknown:
            raise ValueError(f"frontier.guide_sources: unknown {unknown}; known: {', '.join(SOURCES)}")
        if ":" not in self.reference or self.reference.split(":", 1)[1] not in ("temperature", "top-p", "truncation"):
            raise ValueError(f"frontier.reference must be model:curve with an unguided curve (temperature, top-p, "
                             f"truncation), got {self.reference!r}")

    def seed_list(self) -> list[int]:
        return comparison.seeds(self.seeds, "frontier.seeds")

    def guided_list(self) -> list[str]:
        return [m.strip() for m in self.guided.split(",") if m.strip()]

    def plane_list(self) -> list[tuple[str, str]]:
        return [tuple(p.split(":")) for p in self.planes.split(",") if p.strip()]


def curves(fcfg: FrontierConfig, cfg, name: str, family, sampler) -> list[tuple[str, str, float, dict]]:
    """The (curve, knob, value, sample() keyword arguments) this model is sampled at, unguided:
    truncation at the comparison's `temperature`, as the comparison sweeps it; top-p at T = 1."""
    out = [("temperature", "T", t, {"temperature": t}) for t in comparison.floats(cfg.temperatures, "temperatures")]
    if isinstance(family, LMFamily):
        out += [("top-p", "p", p, {"top_p": p}) for p in comparison.floats(fcfg.top_ps, "top_ps")]
    skipped = comparison.truncation_skipped(sampler, family, cfg)
    if skipped:
        print(f"[{name}] {skipped}")
    elif family.sweeps_psi:
        out += [("truncation", "psi", p, {"psi": p, "temperature": cfg.temperature})
                for p in comparison.floats(cfg.psis, "psis")]
    return out


def guides(fcfg, guide_cfg, judge, name, family, sampler, run_dir, device) -> dict[str, tuple]:
    """{source: (D, report)} for this model: a discriminator trained post hoc; for a GAN its own
    discriminator as is (measured only) and fine-tuned from it; for a GPT-2 a causal one started
    from its trunk; as guide_sources asks. Each learning curve goes to TensorBoard under the run's
    guide-<source>/ (guide/* tags)."""
    out, own = {}, None
    for source in [s.strip() for s in fcfg.guide_sources.split(",") if s.strip()]:
        if source.startswith("gan") and not isinstance(family, GANFamily):  # only a GAN run has its own D
            continue
        if source == "lm_tuned" and not isinstance(getattr(sampler, "model", None), GPT):
            continue
        if source.startswith("gan") and own is None:  # read once; train_guide fine-tunes a copy
            own = gan_discriminator(Path(run_dir) / "last.pt", device)
        init = own if source.startswith("gan") else lm_discriminator(sampler, guide_cfg) if source == "lm_tuned" else None
        cfg = dataclasses.replace(guide_cfg, steps=0) if source == "gan" else guide_cfg
        out[source] = trained_guide(source, sampler, judge.corpus, cfg, device, init, Path(run_dir))
        r = out[source][1]
        print(f"[{name}] guide {source}: held-out AUC {r['val_auc']:.3f} [{r['val_auc_lo']:.3f}, "
              f"{r['val_auc_hi']:.3f}], accuracy {r['val_accuracy']:.3f}, Brier {r['val_brier']:.3f} (step "
              f"{r['best_step']} of {r['steps']}){'' if r['signal'] else ': no signal'}")
    return out


GUIDE_FILE = "guide.pt"  # a trained discriminator and its report, in the run's guide-<source>/
PARTIAL_GUIDE_FILE = "guide.partial.pt"  # one in training, after its last whole pass (FitCheckpoint)


def trained_guide(source: str, sampler, corpus, cfg: GuideConfig, device, init, run_dir: Path) -> tuple:
    """(D, report) for one source: read from run_dir/guide-<source>/guide.pt when it was trained
    there under the same settings from the same checkpoints (a cell stopped after its
    discriminators, or a point setting changed, does not train them again: on SeqGAN's oracle
    one takes 20-75 CPU minutes), else trained, its learning curve logged there, and stored; one
    stopped in training goes on from its last whole pass through the pool (guide.partial.pt)."""
    folder = run_dir / f"guide-{source}"
    checkpoints = {f.name: sha256_of(f) for f in sorted(run_dir.glob("*.pt"))}
    key = {"source": source, "guide": asdict(cfg), "run": checkpoints}
    path = folder / GUIDE_FILE
    stored = load_checkpoint_under(path, key)
    if stored is not None:
        D = start_discriminator(sampler, cfg, init)
        D.load_state_dict(stored["model"])
        print(f"[{run_dir.name}] guide {source} read from {path} (same settings and checkpoints)")
        return D.to(device).eval(), stored["report"]
    for stale in folder.glob("events.out.tfevents.*"):  # a killed or superseded attempt's curve: TensorBoard
        stale.unlink()                                  # would draw it beside the one kept
    logger, partial = RunLogger(folder), FitCheckpoint(folder / PARTIAL_GUIDE_FILE, key)
    try:
        D, rep = train_guide(sampler, corpus.train, cfg, device, init=init, draw_real=real_source(corpus),
                             logger=logger, checkpoint=partial)
    finally:
        logger.close()
    save_checkpoint(path, {"model_name": "guide", "model": D.state_dict(), "key": key, "report": rep})
    partial.remove()
    return D, rep


def guided_points(fcfg, guide_cfg, cfg, judge, name, family, sampler, run_dir, device, log) -> tuple[list[dict], dict]:
    """DRS and SIR points for every discriminator of this model -> (points, {source: D's report});
    those in `log` (a PointLog) are read from it, each new one is added to it."""
    points, reports = [], {}
    settings = [("DRS", "gamma", g) for g in comparison.floats(fcfg.drs_gammas, "drs_gammas", positive=False)]
    settings += [("SIR", "alpha", a) for a in comparison.floats(fcfg.sir_alphas, "sir_alphas", positive=False)]
    proposals = Proposals(sampler)  # the candidates are drawn once for every discriminator and strength
    for source, (D, reports[source]) in guides(fcfg, guide_cfg, judge, name, family, sampler, run_dir, device).items():
        for method, knob, value in settings:
            guided = GuidedSampler(proposals, D, method.lower(), value, m=fcfg.sir_m, device=device,
                                   max_cost=fcfg.drs_max_cost)
            curve = method + SOURCES[source]
            done = log.get(curve, value)
            if done is None:
                try:  # at the temperature and psi the discriminator was trained against
                    texts = guided.sample(cfg.num_samples, temperature=guide_cfg.temperature, psi=guide_cfg.psi,
                                          seed=cfg.sample_seed)
                except RuntimeError as e:  # a gamma that keeps almost nothing: this point only is lost
                    print(f"[{name}] {curve} {knob} {value:g}: skipped ({e})")
                    done = log.add({"curve": curve, "value": value, "skipped": f"{curve} {knob} {value:g}: {e}"})
                else:
                    done = log.add({"model": name, "curve": curve, "knob": knob, "value": value,
                                    "cost": guided.stats.cost, "signal": reports[source]["signal"],
                                    **judge.score(texts)})
                    print(f"[{name}] {curve} {knob} {value:g}: cost {guided.stats.cost:.2f} candidates per sample")
            if "skipped" in done:
                reports[source].setdefault("skipped", []).append(done["skipped"])
            else:
                points.append(done)
    return points, reports


POINTS_FILE = "frontier_points.json"  # a model's scored points, beside its run: --reuse true reads them
POINTS_VERSION = 2  # raise when sampling or scoring code changes what a point is: stored points are then rescored
PARTIAL_FILE = "frontier_points.partial.json"  # the points of a cell that stopped before its last one


class PointLog:
    """The points a model's cell has scored so far, written after each one (run_dir/PARTIAL_FILE,
    under the cell's points key), so that a cell stopped midway (a killed job, a machine taken
    back) scores only the rest when run again with --reuse true: on SeqGAN's oracle a GAN's points
    take an hour. Sampling is seeded, so a point read back is the point that would be scored."""

    def __init__(self, run_dir: Path, key: dict, reuse: bool):
        self.path, self.key = Path(run_dir) / PARTIAL_FILE, key
        self.points = ((stored_under(self.path, key) if reuse else None) or {}).get("points", [])
        if self.points:
            print(f"[{Path(run_dir).name}] {len(self.points)} point(s) read from {self.path} (a stopped cell's)")

    def get(self, curve: str, value: float) -> dict | None:
        return next((p for p in self.points if p["curve"] == curve and p["value"] == value), None)

    def add(self, point: dict) -> dict:
        self.points.append(point)
        write_text(self.path, json.dumps({"key": self.key, "points": self.points}, indent=1))
        return point

    def close(self):
        """The cell's points are stored whole (POINTS_FILE): the partial record goes."""
        self.path.unlink(missing_ok=True)


def model_points(fcfg, guide_cfg, cfg, judge, name, family, run_dir, device, log, corpus=None) -> dict:
    """One trained model sampled and scored along its curves -> {points, guides (None: unguided)};
    the points in `log` (a PointLog) are read from it, each new one is added to it; corpus: the
    entry's (its own level), else the comparison's."""
    sampler = family.load(run_dir, corpus or judge.corpus, device)
    points, reports = [], None
    for curve, knob, value, kwargs in curves(fcfg, cfg, name, family, sampler):
        point = log.get(curve, value)
        if point is None:
            texts = sampler.sample(cfg.num_samples, seed=cfg.sample_seed, **kwargs)
            point = log.add({"model": name, "curve": curve, "knob": knob, "value": value, **judge.score(texts)})
        points.append(point)
    if name in fcfg.guided_list():
        more, reports = guided_points(fcfg, guide_cfg, cfg, judge, name, family, sampler, run_dir, device, log)
        points += more
    return {"points": points, "guides": reports}


def points_key(fcfg, guide_cfg, cfg, judge, name: str) -> dict:
    """Every setting a model's frontier points depend on besides its run: its stored points are
    reused (--reuse true) only when this is unchanged. Titles, seeds lists, planes and the
    reference only shape the report."""
    compare_keys = ("num_samples", "sample_seed", "temperature", "temperatures", "psis", "min_latent_use",
                    "lm_score", "reverse_lm_score", "mauve")
    key = {"version": POINTS_VERSION, "top_ps": fcfg.top_ps, "compare": {k: getattr(cfg, k) for k in compare_keys},
           "data": cfg.data_settings(), "scorer": asdict(judge.scorer_cfg)}
    if name in fcfg.guided_list():
        key["guided"] = {**{k: getattr(fcfg, k) for k in ("drs_gammas", "drs_max_cost", "sir_alphas", "sir_m",
                                                                "guide_sources")},
                         **asdict(guide_cfg)}
    return key


def stored_under(path: Path, key: dict) -> dict | None:
    """The JSON record at path if it was written under this key, else None (also when absent)."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored if stored.get("key") == json.loads(json.dumps(key)) else None  # through JSON: as stored


def cached_points(run_dir: Path, key: dict) -> dict | None:
    """The points stored beside a reused run, if they were scored under these settings."""
    path = Path(run_dir) / POINTS_FILE
    stored = stored_under(path, key)
    if stored is None and path.is_file():
        print(f"[{run_dir.name}] {path} was scored under other settings: scoring again")
    return stored


def frontier_cells(fcfg, guide_cfg, cfg, scorer_cfg, entries, corpus, seed: int, judge) -> tuple[list, set, object]:
    """One seed's cells (one per model: train or reuse it, then sample and score it along its curves),
    the ones whose stored results --reuse true may use, and the seed's lock on its runs folder."""
    seed_cfg = dataclasses.replace(cfg, seed=seed, experiment=f"{cfg.experiment or 'frontier'}-seed{seed}")
    runs_dir = Path(cfg.out_dir) / seed_cfg.experiment
    corpora = comparison.entry_corpora(seed_cfg, entries, runs_dir, corpus)  # each entry's tokens
    modes = comparison.preflight(seed_cfg, entries, runs_dir, {n: build_tokenizer(c).itos for n, c in corpora.items()})
    comparison.check_budgets(seed_cfg, entries, runs_dir, modes)
    lock = RunLock(runs_dir).acquire()  # one command at a time per runs folder, as a comparison
    guide_cfg = dataclasses.replace(guide_cfg, seed=guide_cfg.seed + seed)
    cells = []
    for entry in entries:
        kwargs = {"frontier": asdict(fcfg), "guide": asdict(guide_cfg), "compare": asdict(seed_cfg),
                  "scorer": asdict(scorer_cfg), "entry": list(entry), "runs_dir": str(runs_dir),
                  "mode": modes[entry[0]]}
        key = {**kwargs, "compare": {k: v for k, v in kwargs["compare"].items() if k not in comparison.UNSCORED},
               "frontier": {k: v for k, v in kwargs["frontier"].items() if k not in REPORT_ONLY}, "mode": None,
               "judge": judge.digest()}
        cells.append(jobs.Cell(f"seed{seed}/{entry[0]}", runs_dir / "jobs" / entry[0], "experiments.studies.frontier:frontier_job",
                               kwargs, key=key, resume_kwargs={**kwargs, "mode": "resume"}, run_dir=runs_dir / entry[0]))
    reuse = {c.name for c, e in zip(cells, entries) if modes[e[0]] == "reuse"} if cfg.reuse else set()
    return cells, reuse, lock


REPORT_ONLY = ("title", "seeds", "planes", "reference", "table_dir", "index")  # shape the report, not a point


def frontier_job(frontier: dict, guide: dict, compare: dict, scorer: dict, entry: list, runs_dir: str,
                 mode: str) -> dict:
    """One model of one seed: trained (or reused, or resumed), then its points -> {points, guides}.
    Points stored beside a reused run under the same settings are read instead of scored again."""
    fcfg, guide_cfg = FrontierConfig(**frontier), GuideConfig(**guide)
    cfg, scorer_cfg = comparison.CompareConfig(**compare), comparison.ScorerConfig(**scorer)
    name, family_name, settings = entry
    device = runtime.resolve_device(cfg.device)
    corpus = cfg.load()
    judge = comparison.judge_for(cfg, scorer_cfg, corpus)
    corpora = comparison.entry_corpora(cfg, [(name, family_name, settings)], Path(runs_dir), corpus)
    run_dir = comparison.trained_run(cfg, Path(runs_dir), name, family_name, settings, mode)
    key = points_key(fcfg, guide_cfg, cfg, judge, name)
    cached = cached_points(run_dir, key) if mode == "reuse" else None
    if cached is None:
        log = PointLog(run_dir, key, reuse=mode == "reuse")  # a run trained anew has no points yet
        cached = model_points(fcfg, guide_cfg, cfg, judge, name, FAMILIES[family_name], run_dir, device, log,
                              corpora[name])
        write_text(run_dir / POINTS_FILE, json.dumps({"key": key, **cached}, indent=1))
        log.close()
    else:
        print(f"[{name}] frontier points reused from {run_dir / POINTS_FILE} (same settings)")
    return {"points": cached["points"], "guides": cached["guides"]}


def write_frontier(fcfg: FrontierConfig, summary: dict) -> Path:
    """report.md, results.json and one figure per plane in table_dir."""
    out = Path(fcfg.table_dir)
    out.mkdir(parents=True, exist_ok=True)
    agg, planes = summary["points"], fcfg.plane_list()
    has_mauve = any("mauve" in e for e in agg)
    metrics = list(dict.fromkeys([m for plane in planes for m in plane] + (["mauve"] if has_mauve else [])))
    md = [f"# {fcfg.title}", "", f"Generated by `{summary['command']}` ({summary['date']}, "
          f"{summary['wall_minutes']:.0f} min, {summary['threads']} thread(s)); dataset `{summary['dataset']}`, "
          f"training seeds {summary['seeds']}; every point {summary['num_samples']:,} samples, mean ± seed "
          "standard deviation.", ""]
    if "lm_score" in metrics:
        md += ["LM score: the NLL of the samples under a GPT-2 trained on the real training texts; reverse LM "
               "score: the NLL of the real test texts under a GPT-2 trained on the samples (Caccia et al. 2020). "
               "Both in bits per byte of the texts read as byte-level BPE (experiments/scoring/lm_score.py; on "
               "the synthetic oracles, nats per token); lower is better.", ""]
    md += [report.table(agg, metrics), ""]
    for i, (q, d) in enumerate(planes):
        name = f"plane_{q}_{d}.png"
        report.plot_plane(agg, d, q, out / name, f"{report.LABELS.get(q, q)} against {report.LABELS.get(d, d)}")
        md += [f"![{q} against {d}]({name})", ""]
    ref = tuple(fcfg.reference.split(":"))
    md += [f"## Against {ref[0]}'s {ref[1]} curve", "",
           "A point dominates when, at its own diversity, its quality beats the reference curve "
           "(the polyline through its knob values, interpolated linearly; its best crossing where it meets that "
           "diversity more than once) by more than two standard deviations of the difference.", "",
           report.dominance_table(agg, ref, planes), ""]
    if has_mauve:
        md += ["## Each curve's best point by MAUVE", "",
               "MAUVE (Pillutla et al. 2021) of the samples against as many real test texts, on the features "
               "of this comparison's own LM-score GPT-2 (experiments/scoring/mauve.py): it ranks these curves; "
               "it is not comparable with published MAUVE on GPT-2-large features.", "",
               report.best_points(agg, "mauve"), ""]
    md += ["## The discriminators", "",
           "Each discriminator measured on held-out real training texts against held-out samples of the model, "
           "at the step it was kept (its lowest held-out loss; step 0: before any training; the GAN's own D as is "
           "is measured only). AUC: the probability that a real text outscores a sample, with a percentile "
           "bootstrap 95 % interval; a discriminator whose interval does not lie above 0.5 has no signal, and its "
           "guided points are drawn with crosses and left out of the dominance counts. The last column samples "
           "its learning curve (the whole curve: TensorBoard, guide/* under each run's guide-<source>/).", "",
           report.guides_table(summary["guides"])]
    given_up = report.given_up(summary["guides"])
    if given_up:
        md += ["", given_up]
    write_text(out / "report.md", "\n".join(md) + "\n")
    write_text(out / "results.json", json.dumps(summary, indent=1, default=str))
    return out / "report.md"


def parse_args(argv):
    """-> (sections: compare, scorer, frontier, guide, launch, slurm; [(entry, family, settings)]);
    the reference and the guided models must be entries of the comparison."""
    sections, entries, _ = comparison.parse_sections(*cfglib.read_cli(argv),
                                                     extra={"frontier": FrontierConfig(), "guide": GuideConfig()})
    fcfg, names = sections["frontier"], [name for name, _, _ in entries]
    unknown = [m for m in [fcfg.reference.split(":")[0], *fcfg.guided_list()] if m not in names]
    if unknown:
        raise cfglib.ConfigError(f"frontier.reference and frontier.guided must name models of this comparison "
                                 f"({', '.join(names)}); not: {', '.join(unknown)}")
    return sections, entries


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.time()
    sections, entries = parse_args(argv)
    cfg, fcfg, guide_cfg = sections["compare"], sections["frontier"], sections["guide"]
    launch = (sections["launch"], sections["slurm"])
    jobs.ready(*launch)
    corpus = cfg.load()
    comparison.preflight_data(cfg, entries, Path(cfg.out_dir), corpus,
                              comparison.entry_corpora(cfg, entries, Path(cfg.out_dir), corpus))
    command = "python -m experiments.frontier " + " ".join(argv)
    seeds = fcfg.seed_list()
    first = Path(cfg.out_dir) / f"{cfg.experiment or 'frontier'}-seed{seeds[0]}"
    judge = comparison.judge_cell(cfg, sections["scorer"], corpus, first / "jobs" / "judge", real=False)
    cells, reuse, locks = [judge], {judge.name} if cfg.reuse else set(), []
    for seed in seeds:  # every seed's checks before any cell starts
        more, more_reuse, lock = frontier_cells(fcfg, guide_cfg, cfg, sections["scorer"], entries, corpus, seed, judge)
        cells, reuse, locks = cells + more, reuse | more_reuse, locks + [lock]
    results = comparison.launch_cells(cells, reuse, launch, command, [Path(fcfg.table_dir) / "report.md"])
    for lock in locks:
        lock.release()
    if results is None:  # submitted without waiting
        return {"submitted": [c.name for c in cells]}
    points, guides = [], {}
    for seed in seeds:
        guides[seed] = {}
        for name, _, _ in entries:
            out = results[f"seed{seed}/{name}"]
            points += [{**p, "seed": seed} for p in out["points"]]
            if out["guides"] is not None:
                guides[seed][name] = out["guides"]
    summary = summarize(points, guides, command, (cfg, fcfg, guide_cfg), corpus.name, t0)
    print(f"frontier report ({len(seeds)} seeds): {write_frontier(fcfg, summary)}")
    if fcfg.index:
        print(f"every dataset's frontier: {report.write_index(Path(fcfg.index))}")
    return summary


def summarize(points: list[dict], guides: dict, command: str, configs, dataset: str, t0: float) -> dict:
    """What results.json holds: the points over the seeds done so far, per seed, and the settings."""
    cfg, fcfg, guide_cfg = configs
    metrics = sorted({k for p in points for k, v in p.items() if isinstance(v, float) and k in report.DIRECTION})
    return {"command": command, "date": time.strftime("%Y-%m-%d"), "dataset": dataset, "seeds": list(guides),
            "num_samples": cfg.num_samples, "threads": torch.get_num_threads(), "wall_minutes": (time.time() - t0) / 60,
            "config": {"compare": asdict(cfg), "frontier": asdict(fcfg), "guide": asdict(guide_cfg)},
            "guides": guides, "points": report.aggregate(points, metrics), "per_seed": points}
