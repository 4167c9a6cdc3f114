"""The comparison itself: several generators trained on one dataset with one budget, scored
alike, written up (the `compare` command, and `literature`, which runs it once per seed).
What it does, its outputs and settings: experiments/compare.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from baselines import MODELS
from datasets import CorpusError, DataConfig, build_tokenizer
from datasets.batching import byte_texts, reference_tokenizer
from datasets.batching import check_block_size, check_lengths, encode_lines, oov_rate
from datasets.tokenizers import SPECIALS
from experiments.core import config as cfglib
from experiments.core import runtime
from experiments.core.checkpoint import CheckpointError, write_text
from experiments.core.logger import RunLogger
from experiments.core.runlock import RunLock
from experiments import jobs
from experiments.jobs import Cell
from experiments.generators.families import FAMILIES
from experiments.reporting.comparison import write_report
from experiments.scoring.metrics import DEFAULT_NS
from experiments.scoring.nll import bits_per_byte
from experiments.scoring.judge import Judge, content_sha256, real_sample
from experiments.scoring.lm_score import ScorerConfig
from experiments.scoring.samples import SampleTokenizer, collapse_warnings


@dataclass
class CompareConfig(DataConfig):
    experiment: str = ""           # runs/<experiment>/ (and the report's folder); default compare-<dataset>
    models: str = "bigram,mlp,lstm,gpt2"  # comma-separated: [models.<entry>] tables, FAMILIES or MODELS names
    out_dir: str = "runs"          # TensorBoard runs go to out_dir/<experiment>/<entry>
    report_dir: str = ""           # the report goes to report_dir/<experiment>/; "" = out_dir/<experiment>/report
                                   # (git-ignored); the committed configs write to research/
    max_steps: int = 1500          # shared budget: optimizer steps per model ...
    max_minutes: float = 0.0       # ... and wall-clock minutes per model (0 = none); whichever comes first
    eval_interval: int = 250       # steps between the trainers' validation passes and periodic metrics
    eval_samples: int = 200        # samples scored at each evaluation during training (eval/ tags)
    seed: int = 1337               # training seed, the same for every model
    device: str = "auto"
    reuse: bool = False            # load finished runs instead of retraining (and their stored scores), resume an
                                   # interrupted one from its last.pt; otherwise an entry's old run is replaced
    retrain_changed: bool = False  # with reuse: retrain a run whose settings changed instead of refusing it
    num_samples: int = 1000        # samples per model (and real sentences) scored at the end
    sample_seed: int = 0           # the seed of every model's samples and of the real-data draw
    temperature: float = 1.0       # sampling temperature of the results table
    temperatures: str = "0.5,0.7,1.0,1.3,1.6"  # the temperature sweep (comma-separated)
    psis: str = "0.5,0.7,0.9"      # the truncation sweep, for families with a latent (at `temperature`)
    min_latent_use: float = 1e-3   # ... skipped, with the reason in the report, for a generator whose latent use
                                   # (eval/latent_mi, nats per token) is below this: it ignores z, so psi cannot
                                   # move its samples (research/gan: ignored ~1e-7, used 0.15)
    lm_score: bool = True          # LM score: samples under a GPT-2 trained on the real training split
    reverse_lm_score: bool = True  # reverse LM score: a GPT-2 trained on the samples, scored on real test
    mauve: bool = False            # MAUVE against as many real test texts, on the LM-score GPT-2's features
                                   # (experiments/scoring/mauve.py: not comparable with published MAUVE)
    n_show: int = 10               # samples per model shown in the report
    progress: bool = False         # the trainers' progress bars

    def __post_init__(self):
        super().__post_init__()
        for name in ("max_steps", "eval_interval", "num_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CompareConfig.{name} must be positive, got {getattr(self, name)}")
        if self.mauve and not self.lm_score:
            raise ValueError("mauve needs lm_score = true: its features are the LM-score GPT-2's hidden states")
        if self.num_samples < 2 or self.temperature <= 0 or self.max_minutes < 0:
            raise ValueError("need num_samples >= 2, temperature > 0 and max_minutes >= 0")
        floats(self.temperatures, "temperatures")
        floats(self.psis, "psis")
        if not [m for m in self.models.split(",") if m.strip()]:
            raise ValueError("models must name at least one entry")


def floats(text: str, what: str, positive: bool = True) -> list[float]:
    """A comma-separated list of numbers (a sweep's values), positive unless told otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if positive and any(v <= 0 for v in values):
        raise ValueError(f"{what} must be positive, got {text!r}")
    return values


def seeds(text: str, what: str) -> list[int]:
    """Training seeds: distinct integers, at least one (each is a separate set of trained models)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{what} must list at least one seed, each once, e.g. '1,2,3'; got {text!r}")
    return values


RESERVED = {"real-data", "report"}  # folders of runs/<experiment>/ that are not entries
DATA_KEYS = set(DataConfig().data_settings()) | {"data_dir"}
# the data settings an entry may set for itself: the tokens it reads the same examples in. Its
# NLL per token is then per its own vocabulary; bits per byte, BLEU and the judge stay on one
# scale (the test text's bytes, the corpus's own words or characters: reference_tokenizer)
TOKEN_KEYS = {"level", "bpe_vocab_size", "tokenizer"}


# ---------------------------------------------------------------------------------------
# configuration


def parse_args(argv) -> tuple[CompareConfig, ScorerConfig, list[tuple[str, str, dict]], dict]:
    """-> (compare config, scorer config, [(entry, family, trainer settings)], published rows)."""
    sections, entries, published = parse_sections(*cfglib.read_cli(argv))
    return sections["compare"], sections["scorer"], entries, published


def parse_sections(file_values: dict, pairs, extra: dict | None = None):
    """-> ({"compare", "scorer"} and the `extra` sections (a command built on the comparison adds
    its own), [(entry, family, trainer settings)], published rows)."""
    file_values = dict(file_values)
    tables = file_values.pop("models") if isinstance(file_values.get("models"), dict) else {}
    published = checked_published(file_values.pop("published", {}))
    per_entry = {name: dict(settings) for name, settings in tables.items()}
    rest = []
    for key, value in pairs:  # --models.<entry>.<key>=value goes to that entry's trainer
        if key.startswith("models.") and key.count(".") >= 2:
            _, entry, k = key.split(".", 2)
            match = [e for e in per_entry if e.replace("-", "_") == entry]
            per_entry.setdefault(match[0] if match else entry, {})[k] = value
        else:
            rest.append((key, value))
    sections = cfglib.resolve({"compare": CompareConfig(), "scorer": ScorerConfig(), **jobs.sections(), **(extra or {})},
                              file_values, rest)
    cfg = sections["compare"]
    entries = []
    for name in [m.strip() for m in cfg.models.split(",") if m.strip()]:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):  # it names a directory that a re-run replaces
            raise cfglib.ConfigError(f"entry name {name!r}: use letters, digits, '_', '-' and '.' only")
        if name in RESERVED:
            raise cfglib.ConfigError(f"entry name {name!r} is the comparison's own folder; name the entry otherwise")
        settings = dict(per_entry.get(name, {}))
        shared = sorted(set(settings) & (DATA_KEYS - TOKEN_KEYS))
        if shared:  # one set of examples for all, or their NLLs and BLEUs are not comparable
            raise cfglib.ConfigError(
                f"entry {name!r} sets {', '.join(shared)}: data settings belong to the whole comparison, so that every "
                f"model reads the same examples (only {', '.join(sorted(TOKEN_KEYS))} may differ per entry); give "
                f"--{shared[0]} (or {shared[0]} = ... under [compare]) instead of models.{name}.{shared[0]}")
        if own_tokens(settings) and cfg.max_len:
            raise cfglib.ConfigError(
                f"entry {name!r} reads the text in its own tokens, but max_len {cfg.max_len} counts tokens: each level "
                "would drop other examples. Drop --max_len (an overlong line is refused with its line number) or give "
                "every entry the comparison's level")
        family = settings.pop("family", name if name in FAMILIES else "lm")
        if family not in FAMILIES:
            raise cfglib.ConfigError(f"entry {name!r}: unknown family {family!r}; choose one of {sorted(FAMILIES)}")
        if family == "lm":
            settings.setdefault("model", name)
            if settings["model"] not in MODELS:
                raise cfglib.ConfigError(f"entry {name!r} is not a model: give [models.{name}] model = one of "
                                         f"{sorted(MODELS)}, or family = one of {sorted(FAMILIES)}")
        entries.append((name, family, settings))
    if len({e[0] for e in entries}) != len(entries):
        raise cfglib.ConfigError(f"models lists an entry twice: {cfg.models!r}")
    return sections, entries, published


def trainer_argv(cfg: CompareConfig, runs_dir: Path, name: str, settings: dict) -> list[str]:
    """The shared settings (every data setting among them), then the entry's own (later settings win)."""
    def fmt(v):
        return str(v).lower() if isinstance(v, bool) else str(v)
    shared = dict(**cfg.data_settings(), data_dir=cfg.data_dir, out_dir=runs_dir, run_name=name, seed=cfg.seed, max_steps=cfg.max_steps, max_minutes=cfg.max_minutes,
                  eval_interval=cfg.eval_interval, eval_samples=cfg.eval_samples, device=cfg.device,
                  progress=cfg.progress)
    return [f"--{k}={fmt(v)}" for k, v in {**shared, **settings}.items()]


def own_tokens(settings: dict) -> bool:
    """Whether an entry reads the text in tokens of its own (its level or BPE, or a Hugging Face
    GPT-2's BPE through hf_init)."""
    return bool(set(settings) & (TOKEN_KEYS | {"hf_init"}))


def entry_corpora(cfg: CompareConfig, entries, runs_dir: Path, corpus) -> dict:
    """Each entry's corpus: the comparison's, or for an entry with tokens of its own the same
    examples read at its level (loaded once per distinct level and BPE)."""
    out, loaded = {}, {}
    keys = sorted(TOKEN_KEYS)
    base = tuple(getattr(cfg, k) for k in keys)
    for name, family_name, settings in entries:
        train = FAMILIES[family_name].config(trainer_argv(cfg, runs_dir, name, settings))["train"]
        key = tuple(getattr(train, k) for k in keys)
        if key not in loaded:
            loaded[key] = corpus if key == base else dataclasses.replace(cfg, **dict(zip(keys, key))).load()
        out[name] = loaded[key]
    return out


def preflight(cfg: CompareConfig, entries, runs_dir: Path, vocabularies: dict[str, list[str]]) -> dict[str, str]:
    """Every entry's trainer settings resolved, its data settings equal to the comparison's, and a
    run to be reused or resumed trained with these settings on this vocabulary: checked in seconds,
    before any training, so that a mismatch never surfaces after the earlier models have trained.
    -> {entry: what its cell does with its run folder}: "fresh" (train from scratch), "reuse" (a
    finished run, --reuse true) or "resume" (an interrupted run with its last.pt, --reuse true).
    The budgets come after, in check_budgets (it builds models and times them on this machine)."""
    want, modes = cfg.data_settings(), {}
    for name, family_name, settings in entries:
        family = FAMILIES[family_name]
        requested = family.config(trainer_argv(cfg, runs_dir, name, settings))
        got = requested["train"].data_settings()
        diffs = [f"{k}: {got[k]!r} vs {want[k]!r}" for k in want
                 if got.get(k) != want[k] and not (k in TOKEN_KEYS and own_tokens(settings))]
        if diffs:
            raise cfglib.ConfigError(f"entry {name!r} would read other data than the comparison: " + "; ".join(diffs))
        run_dir = runs_dir / name
        modes[name] = run_mode(cfg, family, run_dir)
        if modes[name] != "fresh" and not same_run(cfg, name, family, run_dir, requested, vocabularies[name]):
            print(f"[{name}] retraining {run_dir}: its settings changed (--retrain_changed true)")
            modes[name] = "fresh"
    return modes


def check_budgets(cfg: CompareConfig, entries, runs_dir: Path, modes: dict[str, str]) -> None:
    """Every entry to be trained fresh with a max_minutes left time to train after its final
    scoring, as its family's check_budget estimates on this machine (building the model, timing
    its scoring): refused before any entry trains, naming the entry and the setting to raise."""
    for name, family_name, settings in entries:
        check = getattr(FAMILIES[family_name], "check_budget", None)  # optional in the family protocol
        if modes[name] != "fresh" or check is None:
            continue
        argv = trainer_argv(cfg, runs_dir, name, settings)
        minutes = getattr(FAMILIES[family_name].config(argv)["train"], "max_minutes", 0)
        if minutes:
            print(f"[{name}] checking that max_minutes {minutes:g} leaves time to train after the final scoring")
            try:
                check(argv)
            except cfglib.ConfigError as e:
                raise cfglib.ConfigError(f"entry {name!r}: {e}; for this entry alone: --models.{name}.max_minutes "
                                         "M") from None


def run_mode(cfg: CompareConfig, family, run_dir: Path) -> str:
    """What an entry's cell does with its run folder (see preflight)."""
    if not cfg.reuse:
        return "fresh"
    if family.is_trained(run_dir):
        return "reuse"
    interrupted = (run_dir / "last.pt").is_file() and (run_dir / "config.json").is_file()
    return "resume" if interrupted else "fresh"


def same_run(cfg: CompareConfig, name: str, family, run_dir: Path, requested: dict, vocabulary: list[str]) -> bool:
    """Whether the run in run_dir was trained with the requested settings on this vocabulary; a
    difference is refused with the fix, or (retrain_changed) -> False: retrain it."""
    stored = json.loads((run_dir / "config.json").read_text())
    changed = settings_changed(requested, stored)
    fix = ("Run without --reuse true to retrain every entry, give --retrain_changed true to retrain the changed "
           "ones, or restore the settings it was trained with")
    if changed:
        if cfg.retrain_changed:
            return False
        raise CheckpointError(
            f"{run_dir} was trained with other settings than this comparison asks for ("
            + ", ".join(changed[:12]) + f"{', ...' if len(changed) > 12 else ''}): reusing it would report "
            f"one run under another's settings. {fix}")
    old = family.vocabulary(run_dir) if family.is_trained(run_dir) else None  # an interrupted run: its resume checks
    if old is not None and old != vocabulary:
        if cfg.retrain_changed:
            return False
        raise CheckpointError(
            f"{run_dir} was trained on another vocabulary ({len(old):,} symbols) than this comparison's "
            f"({len(vocabulary):,}; level {cfg.level or 'default'}, dataset {cfg.dataset}): its data settings "
            f"differ. {fix}")
    return True


MIN_FREE_BYTES = 1 << 30  # a comparison writes every model's best, last (with optimizer state) and pretrained checkpoints


def preflight_data(cfg: CompareConfig, entries, runs_dir: Path, corpus, corpora: dict) -> None:
    """Every check that can fail on the data, in seconds and before the judge or any trainer starts:
    a vocabulary with symbols in it, each entry's block size against the longest example in its
    own tokens (an outlier refused where a context is sized from the data: every automatic
    block_size, and the judge's scorer LMs), and room on disk for the runs."""
    lengths = {}  # id(corpus) -> tokens per example, by split

    def tokens(c):
        if id(c) not in lengths:
            tokenizer = build_tokenizer(c)
            if tokenizer.vocab_size <= len(SPECIALS):
                raise CorpusError(f"the training split of {c.name} leaves no symbol in the vocabulary (min_freq "
                                  f"{cfg.min_freq}, max_vocab {cfg.max_vocab}): lower --min_freq or check the file")
            lengths[id(c)] = {s: [len(ids) for ids in encode_lines(tokenizer, getattr(c, s))]
                              for s in ("train", "val", "test")}
        return lengths[id(c)]

    tokens(corpus)
    for name, family_name, settings in entries:
        sections = FAMILIES[family_name].config(trainer_argv(cfg, runs_dir, name, settings))
        block = next((getattr(sec, "block_size") for key, sec in sections.items()
                      if key in ("model", "generator") and hasattr(sec, "block_size")), 0)
        try:
            check_block_size(corpora[name], tokens(corpora[name]), block)
        except CorpusError as e:
            raise CorpusError(f"entry {name!r}: {e}") from None
    if (cfg.lm_score or cfg.reverse_lm_score or cfg.mauve) and not corpus.fixed_length:
        check_lengths(corpus, tokens(corpus), who="the judge's scorer LMs (lm_score, reverse_lm_score, mauve)")
    folder = next(p for p in [runs_dir, *runs_dir.parents] if p.exists())
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise CheckpointError(f"{folder} has {free / 2**20:,.0f} MiB free; a comparison of {len(entries)} models "
                              f"needs at least {MIN_FREE_BYTES / 2**30:.0f} GiB for their checkpoints: free some "
                              "space or give --out_dir on another disk")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _defaults(obj, prefix: str = "") -> dict:
    """A config dataclass's field defaults, flattened as _flat flattens its values."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_defaults(value, f"{prefix}{f.name}."))
        elif f.default is not dataclasses.MISSING:
            out[f"{prefix}{f.name}"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f"{prefix}{f.name}"] = f.default_factory()
    return out


def settings_changed(requested: dict, stored: dict) -> list[str]:
    """'section.key stored -> requested' for every setting a finished run (its config.json) was
    trained with that differs from the requested one. Sizes its trainer fills in (requested as 0:
    vocab_size, block_size), the resume flags and the runs folder (a run moved elsewhere is the
    same run) do not count."""
    out = []
    for sec, obj in requested.items():
        have, defaults = _flat(stored.get(sec, {})), _defaults(obj)
        for k, v in _flat(dataclasses.asdict(obj)).items():
            filled = k.rsplit(".", 1)[-1] in ("vocab_size", "block_size") and v == 0
            if filled or (sec == "train" and k in ("resume", "progress", "out_dir")):
                continue
            # a setting added after the run was trained is absent from its config.json: it matches its
            # default, which is what the run was trained with
            if (have[k] != v) if k in have else v != defaults.get(k, v):
                out.append(f"{sec}.{k} {have.get(k, '(absent)')!r} -> {v!r}")
    return out


INCOMPLETE = "> **Incomplete.**"


def mark_failed(report: Path, failures: dict, gather: str) -> None:
    """The report of a comparison whose cells failed: flagged, with which and how to finish it."""
    old = report.read_text() if report.is_file() else ""
    if old.startswith(INCOMPLETE):
        old = old.split("\n\n", 1)[1] if "\n\n" in old else ""
    note = (f"{INCOMPLETE} The comparison started on {time.strftime('%Y-%m-%d %H:%M')} did not finish: "
            + "; ".join(f"{name}: {why}" for name, why in failures.items())
            + f". Finish it with `{gather}`" + (": the figures below are from an earlier comparison." if old else "."))
    write_text(report, note + "\n\n" + old)


def mark_incomplete(report: Path) -> None:
    """Flag an existing report while a new comparison into its folder runs: killed midway, the
    comparison would otherwise leave the old report looking complete over newer runs."""
    if report.is_file() and not report.read_text().startswith(INCOMPLETE):
        write_text(report, f"{INCOMPLETE} A new comparison into this folder started on "
                           f"{time.strftime('%Y-%m-%d %H:%M')} and has not finished: the figures below are from the "
                           "previous one, and some of its runs may have been replaced since. The note goes when a "
                           "comparison finishes.\n\n" + report.read_text())


def describe_splits(corpus, tokenizer) -> dict:
    """Which examples every figure is on, for the report: files and sizes, OOV rates, references."""
    def where(split):
        f = corpus.sources.get(split, (f"the {split} split of {corpus.name}",))[0]
        return f"{f} ({len(getattr(corpus, split)):,} examples)"
    out = {s: where(s) for s in ("train", "val", "test")}
    out.update(bleu_references="test", eval_references="val",
               oov_val=oov_rate(tokenizer, corpus.val), oov_test=oov_rate(tokenizer, corpus.test))
    return out


# ---------------------------------------------------------------------------------------
# scoring and logging


class CompareLogger(RunLogger):
    """RunLogger writing to its own events file (suffix .compare) inside a trainer's run
    directory, so a re-run replaces what the comparison wrote and leaves the curves alone."""

    SUFFIX = ".compare"

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        for old in self.run_dir.glob(f"events.out.tfevents.*{self.SUFFIX}"):
            old.unlink()
        self.writer = SummaryWriter(str(self.run_dir), filename_suffix=self.SUFFIX)


def truncation_skipped(sampler, family, cfg) -> str:
    """Why this model gets no psi rows ("" when it gets them): a family without a latent gets none
    silently; a latent generator whose z is (nearly) ignored gets a line saying so instead of rows
    that could only repeat the psi = 1 row."""
    use = sampler.info.get("latent_mi")
    if not family.sweeps_psi or not floats(cfg.psis, "psis") or use is None or use >= cfg.min_latent_use:
        return ""
    return (f"truncation rows omitted: latent use {use:.1e} nats per token (eval/latent_mi) is below "
            f"min_latent_use = {cfg.min_latent_use:g}: the generator ignores z, so psi cannot move its samples")


def sweep(sampler, family, cfg, evaluator, samples_at_t, skipped: str) -> list[dict]:
    """Quality-diversity points: every temperature (psi = 1), and every psi at `temperature` unless
    `skipped` (truncation_skipped's reason) says why not."""
    grid = [(t, 1.0) for t in floats(cfg.temperatures, "temperatures")]
    if family.sweeps_psi and not skipped:
        grid += [(cfg.temperature, p) for p in floats(cfg.psis, "psis") if p != 1.0]
    points = []
    for t, psi in grid:
        s = samples_at_t if (t, psi) == (cfg.temperature, 1.0) else sampler.sample(
            cfg.num_samples, temperature=t, psi=psi, seed=cfg.sample_seed)
        point = {"temperature": t, "psi": psi, **evaluator.score(s)}
        point["nll_test"] = sampler.nll("test", temperature=t, psi=psi)["nll"]  # NLL of the scaled model
        points.append(point)
    return points


def sweep_text(points: list[dict]) -> str:
    keys = [k for k in ("bleu5", "self_bleu5", "nll_test", "nll_oracle", "precision", "recall") if k in points[0]]
    lines = ["| T | psi | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    lines += [f"| {p['temperature']:g} | {p['psi']:g} | " + " | ".join(f"{p[k]:.4f}" for k in keys) + " |"
              for p in points]
    return "\n".join(lines)


def log_row(run_dir: Path, row: dict, hparams: dict | None) -> None:
    """final/* scalars, samples and the sweep into the run; hparams only where the trainer wrote none."""
    log = CompareLogger(run_dir)
    step = row["steps"] or 0
    finals = {f"final/{k}": v for k, v in row["metrics"].items() if isinstance(v, (int, float)) and v is not None}
    if hparams is not None:
        log.hparams(hparams, finals, step)
    else:
        log.scalars(finals, step)
    log.samples("samples/compare", row["samples"][:50], step)
    if row.get("sweep"):
        log.writer.add_text("sweep", sweep_text(row["sweep"]), step)
    log.close()


def write_experiment_summary(runs_dir: Path, metric_names: list[str]) -> None:
    """The hparams experiment at the experiment root: its metric columns are the final/*
    metrics, so TensorBoard's HPARAMS view shows every run's final metrics side by side
    (without it, the first run's own hparams summary would decide the columns)."""
    for old in runs_dir.glob("events.out.tfevents.*"):
        if old.is_file():
            old.unlink()
    writer = SummaryWriter(str(runs_dir))
    hp = {"run_name": "", "model": "", "family": "", "preset": "", "max_steps": 0, "max_minutes": 0.0,
          "batch_size": 0, "lr": 0.0}
    experiment, _, _ = hparams_summary(hp, {f"final/{m}": 0.0 for m in metric_names})
    writer.file_writer.add_summary(experiment)
    writer.close()


# ---------------------------------------------------------------------------------------


def trained_run(cfg: CompareConfig, runs_dir: Path, name: str, family_name: str, settings: dict,
                mode: str) -> Path:
    """The entry's finished run: reused, resumed from its last.pt, or trained afresh into an emptied
    folder (mode: preflight's)."""
    family, run_dir = FAMILIES[family_name], runs_dir / name
    argv = trainer_argv(cfg, runs_dir, name, settings)
    if mode in ("reuse", "resume") and family.is_trained(run_dir):  # resume: a job requeued after training
        print(f"[{name}] reusing the finished run in {run_dir}")
        return run_dir
    if mode == "resume" and (run_dir / "last.pt").is_file():
        print(f"[{name}] resuming the interrupted run in {run_dir} from its last.pt")
        return family.train(argv + ["--resume=true"])
    if run_dir.exists() and int(os.environ.get("RANK", 0)) == 0:  # a fresh run: never append new curves to an
        print(f"[{name}] replacing the earlier run in {run_dir}")  # old run's events (a DDP cell: rank 0 clears it,
        shutil.rmtree(run_dir)                                       # before the others can join its process group)
    print(f"[{name}] training ({family_name} family)")
    return family.train(argv)


def model_row(cfg: CompareConfig, judge: Judge, name: str, family_name: str, run_dir: Path, corpus=None) -> dict:
    """One trained model scored: samples at `temperature`, NLL on test and val, every metric and the
    quality-diversity sweep. Its collapse warnings read the real-data row, which a cell does not wait
    for: finish() adds them (add_warnings)."""
    family = FAMILIES[family_name]
    sampler = family.load(run_dir, corpus or judge.corpus, judge.device)  # at the entry's own level
    t_score = time.time()  # the comparison's own scoring: not in the trainers' max_minutes
    samples = sampler.sample(cfg.num_samples, temperature=cfg.temperature, seed=cfg.sample_seed)
    t_nll = time.time()
    test, val = sampler.nll("test"), sampler.nll("val")
    timing = {"sampling": t_nll - t_score, "nll": time.time() - t_nll}
    texts = byte_texts(judge.corpus, "test")  # one denominator for every row: the test split's text
    metrics = {"nll_test": test["nll"], "nll_test_with_pad": test.get("nll_with_pad"), "nll_val": val["nll"],
               "nll_K": test.get("K"), **judge.score(samples)}
    if texts is not None and "tokens" in test:
        metrics.update(bpb_test=bits_per_byte(test["nll"] * test["tokens"], texts),
                       unk_test=sampler.data.oov["test"])
    timing.update(judge.timing)
    skipped = truncation_skipped(sampler, family, cfg)
    t_sweep = time.time()
    points = sweep(sampler, family, cfg, judge.evaluator, samples, skipped)
    timing["sweep"] = time.time() - t_sweep
    row = {"label": name, "family": family_name, "kind": "model", "run_dir": str(run_dir), **sampler.info,
           "samples": samples, "metrics": metrics, "sweep": points, "timing": timing,
           "warnings": [], "sweep_note": skipped}
    row["score_seconds"] = time.time() - t_score
    log_row(run_dir, row, None)
    print(f"[{name}] nll_test {metrics['nll_test']:.4f}  bleu2..5 "
          + " ".join(f"{metrics[f'bleu{n}']:.3f}" for n in DEFAULT_NS)
          + "  self_bleu5 " + f"{metrics['self_bleu5']:.3f}" + f"  (scored in {row['score_seconds']:.0f} s)")
    if row["sweep_note"]:
        print(f"[{name}] {row['sweep_note']}")
    return row


def add_warnings(row: dict, real: dict) -> None:
    """A cell's row given its collapse warnings against the real-data row (the cells run without
    waiting for that row), printed and written into the model's TensorBoard run."""
    row["warnings"] = collapse_warnings(row["metrics"], real, row.get("adv_nll_rise"))
    for w in row["warnings"]:
        print(f"[{row['label']}] warning: {w}")
    folder = Path(row["run_dir"])
    for old in folder.glob("events.out.tfevents.*.warnings"):
        old.unlink()
    if row["warnings"]:
        writer = SummaryWriter(str(folder), filename_suffix=".warnings")
        writer.add_text("warnings", "  \n".join(row["warnings"]), row["steps"] or 0)
        writer.close()


def real_row(cfg: CompareConfig, judge: Judge) -> dict:
    """The reference row: real training sentences, as many as samples, scored the same way."""
    real = real_sample(cfg, judge.corpus)
    print(f"scoring {len(real)} real training sentences")
    row = {"label": "real data", "family": "data", "kind": "real", "run_dir": None,
           "params": None, "steps": None, "train_seconds": None, "samples": real,
           "metrics": judge.score(real, real=True), "sweep": []}
    row["timing"] = dict(judge.timing)
    return row


def log_real_row(runs_dir: Path, row: dict) -> dict:
    """The real-data row into its own TensorBoard run of this experiment; -> the row with its folder."""
    row = {**row, "run_dir": str(runs_dir / "real-data")}
    shutil.rmtree(runs_dir / "real-data", ignore_errors=True)
    log_row(runs_dir / "real-data", row, {"run_name": "real-data", "model": "real data", "family": "data"})
    return row


def checked_published(published: dict) -> dict:
    """The config's [published."<row>"] tables, each refused without a `source` (paper, table or
    page, or repository file: where a reader can check the figures) or with a figure that is not a number."""
    for label, values in published.items():
        if not isinstance(values, dict) or not str(values.get("source", "")).strip():
            raise cfglib.ConfigError(f'published row {label!r} has no source: add source = "<paper, table or page, '
                                     f'or repository file>" to [published."{label}"]')
        bad = [k for k, v in values.items() if k != "source" and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        if bad:
            raise cfglib.ConfigError(f"published row {label!r}: {', '.join(bad)} must be numbers (only `source` is text)")
    return published


def published_rows(published: dict) -> list[dict]:
    """Published figures, shown beside ours in the report (their source apart from the metrics)."""
    return [{"label": label, "family": "published", "kind": "published", "run_dir": None, "params": None,
             "steps": None, "train_seconds": None, "samples": [], "source": values["source"],
             "metrics": {k: v for k, v in values.items() if k != "source"}, "sweep": []}
            for label, values in published.items()]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    sections, entries, published = parse_sections(*cfglib.read_cli(argv))
    return run(sections["compare"], sections["scorer"], entries, published,
               command="python -m experiments.compare " + " ".join(argv),
               launch=(sections["launch"], sections["slurm"]))


@dataclass
class Study:
    """One comparison between its preflight and its report: what the cells are built from."""
    cfg: CompareConfig
    scorer_cfg: ScorerConfig
    entries: list
    published: dict
    command: str
    runs_dir: Path
    report_dir: Path
    corpus: object
    corpora: dict
    modes: dict          # entry -> "fresh" | "reuse" | "resume" (preflight)
    plan: dict           # the judge's plan
    lock: RunLock
    t0: float

    @property
    def report(self) -> Path:
        return self.report_dir / "report.md"


def prepare(cfg: CompareConfig, scorer_cfg: ScorerConfig, entries, published: dict, command: str,
            plan: dict | None = None) -> Study:
    """Everything checked before a cell starts: the data, every entry's settings and reused run, the
    disk; the experiment folder locked, an old report marked incomplete, the judge's cost printed
    (plan: another study's of the same corpus and judge, e.g. literature's first seed's)."""
    t0 = time.time()
    runtime.resolve_device(cfg.device)  # an unusable device is refused before any cell starts
    experiment = cfg.experiment or f"compare-{Path(cfg.dataset).stem}"
    runs_dir = Path(cfg.out_dir) / experiment
    report_dir = Path(cfg.report_dir) / experiment if cfg.report_dir else runs_dir / "report"
    corpus = cfg.load()
    if corpus.mode != "sequence":
        raise cfglib.ConfigError(f"{corpus.name} is read as one stream; a comparison scores samples against "
                                 "reference examples, one a line: use mode sequence")
    corpora = entry_corpora(cfg, entries, runs_dir, corpus)  # an entry with tokens of its own: its level's
    modes = preflight(cfg, entries, runs_dir, {name: build_tokenizer(c).itos for name, c in corpora.items()})
    preflight_data(cfg, entries, runs_dir, corpus, corpora)
    check_budgets(cfg, entries, runs_dir, modes)  # after every cheap check: it builds each model
    lock = RunLock(runs_dir).acquire()  # one comparison per experiment folder
    mark_incomplete(report_dir / "report.md")  # until this comparison replaces it
    if plan is None:
        plan = judge_for(cfg, scorer_cfg, corpus).plan(len(entries))
    return Study(cfg, scorer_cfg, entries, published, command, runs_dir, report_dir, corpus, corpora, modes, plan,
                 lock, t0)


# ---------------------------------------------------------------------------------------
# the cells: the judge once per corpus, then one per entry (train, then score)

UNSCORED = ("reuse", "retrain_changed", "progress", "models", "report_dir", "n_show", "experiment")  # no cell reads them


def judge_for(cfg: CompareConfig, scorer_cfg: ScorerConfig, corpus) -> Judge:
    """The judge of a comparison: samples and references split as the corpus's words or characters
    (at bpe level too; "<unk>" in a sample read back as one token), on the comparison's device."""
    return Judge(cfg, scorer_cfg, corpus, SampleTokenizer(reference_tokenizer(corpus)), runtime.resolve_device(cfg.device))


def judge_cell(cfg: CompareConfig, scorer_cfg: ScorerConfig, corpus, folder: Path, real: bool = True) -> Cell:
    """The judge's cell: the scorer LM fitted into the judge cache and (real) the real-data row scored.
    It is listed first, and the scoring cells do not wait for it: whichever job first needs the
    scorer fits it under the cache's lock, and every other waits for it and reads it (the cache
    is keyed and locked: experiments/scoring/judge.py), so it is fitted once per corpus."""
    kwargs = {"compare": asdict(cfg), "scorer": asdict(scorer_cfg), "real": real}
    decides = ("data_dir", *cfg.data_settings(), "out_dir", "device", "num_samples", "sample_seed", "lm_score",
               "reverse_lm_score", "mauve")
    key = {"compare": {k: getattr(cfg, k) for k in decides}, "scorer": asdict(scorer_cfg), "real": real,
           "corpus": content_sha256(corpus)}
    return Cell("judge", folder, "experiments.studies.comparison:judge_job", kwargs, key=key)


def entry_cells(study: Study, judge: Cell, prefix: str = "", tasks: int = 1) -> list[Cell]:
    """One cell per entry: its run trained (or reused, or resumed), then scored by the judge."""
    cells = []
    for name, family_name, settings in study.entries:
        kwargs = {"compare": asdict(study.cfg), "scorer": asdict(study.scorer_cfg),
                  "entry": [name, family_name, settings], "runs_dir": str(study.runs_dir), "mode": study.modes[name]}
        key = {**kwargs, "compare": {k: v for k, v in kwargs["compare"].items() if k not in UNSCORED},
               "mode": None, "judge": judge.digest()}  # the judge's key holds the corpus's content hash
        cells.append(Cell(prefix + name, study.runs_dir / "jobs" / name, "experiments.studies.comparison:entry_job", kwargs,
                          key=key, resume_kwargs={**kwargs, "mode": "resume"}, run_dir=study.runs_dir / name,
                          tasks=tasks))
    return cells


def reusable(study: Study, judge: Cell, prefix: str = "") -> set[str]:
    """The cells whose stored results a re-run may use: under --reuse true, the judge and every entry
    whose finished run is reused."""
    if not study.cfg.reuse:
        return set()
    return {judge.name} | {prefix + name for name, mode in study.modes.items() if mode == "reuse"}


def judge_job(compare: dict, scorer: dict, real: bool) -> dict:
    """The judge's cell (see judge_cell) -> {"row": the real-data row or None, "fit": the fit's seconds}."""
    cfg, scorer_cfg = CompareConfig(**compare), ScorerConfig(**scorer)
    corpus = cfg.load()
    judge = judge_for(cfg, scorer_cfg, corpus)
    row = real_row(cfg, judge) if real else None
    if not real and (cfg.lm_score or cfg.mauve):
        judge.scorer()
    if not real and cfg.reverse_lm_score:
        judge.text()
    return {"row": row, "fit": {**judge.fit, "stored_seconds": judge.stored_fit_seconds()}}


def judge_fit(plan: dict, fit: dict) -> dict:
    """The judge's fit as the report states it: a scorer the plan found no cache for was fitted by
    this command, in whichever of its cells needed it first (the judge's cell then read it)."""
    out = {k: v for k, v in fit.items() if k != "stored_seconds"}
    if plan.get("scorer_cached") is False and out.get("scorer_reused"):
        out.update(scorer_reused=False, scorer_seconds=fit.get("stored_seconds") or 0.0)
    return out


def entry_job(compare: dict, scorer: dict, entry: list, runs_dir: str, mode: str) -> dict | None:
    """One entry's cell (see entry_cells) -> its row of the report, without the collapse warnings
    (they read the real-data row: finish adds them)."""
    cfg, scorer_cfg = CompareConfig(**compare), ScorerConfig(**scorer)
    name, family_name, settings = entry
    corpus = cfg.load()
    corpora = entry_corpora(cfg, [(name, family_name, settings)], Path(runs_dir), corpus)
    run_dir = trained_run(cfg, Path(runs_dir), name, family_name, settings, mode)
    if int(os.environ.get("RANK", 0)) != 0:  # a DDP cell's other processes: rank 0 scores
        return None
    return model_row(cfg, judge_for(cfg, scorer_cfg, corpus), name, family_name, run_dir, corpora[name])


def launch_cells(cells: list[Cell], reuse: set, launch: tuple, command: str, reports: list[Path]) -> dict | None:
    """jobs.launch for a command's cells; a failure marks its reports incomplete, naming the cells."""
    gather = re.sub(r"\s--wait[= ](false|0|no)\b", "", command)  # the gather waits
    gather = gather if re.search(r"--reuse[= ]true", gather) else gather + " --reuse true"
    try:
        return jobs.launch(cells, *launch, reuse=reuse, gather=gather)
    except jobs.JobsFailed as e:
        for report in reports:
            mark_failed(report, e.failures, gather)
        raise


def run(cfg: CompareConfig, scorer_cfg: ScorerConfig, entries, published: dict, command: str,
        launch: tuple | None = None) -> dict:
    """Train (or reuse) every entry, score it and the real-data row alike, write the report;
    -> the results (what results.json holds). launch: ([launch], [slurm]) sections (default inline)."""
    launch = launch or (jobs.LaunchConfig(), jobs.SlurmConfig())
    jobs.ready(*launch)
    study = prepare(cfg, scorer_cfg, entries, published, command)
    judge = judge_cell(cfg, scorer_cfg, study.corpus, study.runs_dir / "jobs" / "judge")
    cells = [judge] + entry_cells(study, judge, tasks=launch[1].tasks_per_job)
    results = launch_cells(cells, reusable(study, judge), launch, command, [study.report])
    if results is None:  # submitted without waiting
        study.lock.release()
        return {"submitted": [c.name for c in cells]}
    return finish(study, results[judge.name], [results[name] for name, _, _ in entries])


def finish(study: Study, judged: dict, rows: list[dict]) -> dict:
    """The gathered rows (the judge's real-data row first) written up; -> the results."""
    cfg, runs_dir, corpus = study.cfg, study.runs_dir, study.corpus
    rows = [log_real_row(runs_dir, judged["row"])] + rows
    for row in rows[1:]:
        add_warnings(row, rows[0]["metrics"])
    if any(own_tokens(settings) for _, _, settings in study.entries):  # the table says each row's tokens
        for row in rows[1:]:
            tok = build_tokenizer(study.corpora[row["label"]])
            row["tokens"] = f"{tok.level} ({tok.vocab_size:,})"
    rows += published_rows(study.published)
    metric_names = sorted({k for r in rows if r["kind"] != "published" for k, v in r["metrics"].items()
                           if isinstance(v, (int, float))})
    write_experiment_summary(runs_dir, metric_names)
    text = SampleTokenizer(reference_tokenizer(corpus))
    results = {"experiment": runs_dir.name, "dataset": corpus.name, "command": study.command, "config": asdict(cfg),
               "scorer": asdict(study.scorer_cfg), "runs_dir": str(runs_dir),
               "device": str(runtime.resolve_device(cfg.device)), "threads": torch.get_num_threads(),
               "wall_seconds": time.time() - study.t0,
               "reused": [name for name, _, _ in study.entries if study.modes[name] == "reuse"],
               "splits": describe_splits(corpus, SampleTokenizer(build_tokenizer(corpus))), "rows": rows,
               "judge": {**study.plan, **judge_fit(study.plan, judged["fit"])}}
    report = write_report(results, study.report_dir, tokenize=text.split, test_texts=corpus.test)
    print(f"report: {report}")
    print(f"TensorBoard runs: {runs_dir}  (tensorboard --logdir {runs_dir})")
    print(f"wall time {results['wall_seconds']:.0f}s")
    study.lock.release()
    return results
