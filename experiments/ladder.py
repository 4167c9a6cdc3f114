"""The autoregressive ladder: train every rung on its config and write the results table.

    python -m experiments.ladder                         # train all eight, then write research/ladder/results.md
    python -m experiments.ladder --models rnn,gru        # some of them (the table lists only these models)
    python -m experiments.ladder --collect true          # no training: the table from the runs already there
    python -m experiments.ladder --bench true            # ms per optimizer step of each model, 200 steps each
    python -m experiments.ladder --launcher local --jobs 2   # two rungs at once (experiments/jobs)

Each model `m` trains with experiments.train_lm on `experiments/configs/lm/names_<m>.toml`
(the ladder's acceptance protocol: names, makemore's split, batch 32, at most 20,000
steps, no more parameters than makemore's model of the type) into `<out_dir>/<m>/`.
The table is built only from what the runs wrote (config.json, metrics.json,
samples.txt), so every figure in it comes from a real run. It sets them beside the
ladder's acceptance bound on test NLL (`BOUNDS`) and makemore's own figures (test NLL at
20,000 steps and ms per step, measured on a 2-core machine of the kind CI uses).

Step time is the mean wall time of an optimizer step during training (forward,
backward, clipping, update; no evaluation), `ms_per_step` in metrics.json. Training runs
share the machine with whatever else runs on it; `--bench true` re-measures step time
alone, with short runs of the same configs, and writes `bench.md` beside the table.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from baselines import MODELS
from experiments import jobs
from experiments.core import cli, config as cfglib
from experiments.core.checkpoint import write_text
from experiments.trainers import lm as lm_trainer

LADDER = ("bigram", "bigram-neural", "bow", "mlp", "rnn", "gru", "lstm", "wavenet")

# the acceptance bounds of the ladder: the highest test NLL each rung may reach, in nats per
# character on names with makemore's split (the table's "within bound" column)
BOUNDS = {"bigram": 2.45, "bow": 2.15, "rnn": 2.05, "mlp": 2.03, "gru": 2.00, "lstm": 2.00, "wavenet": 1.99}
# makemore's own models on names (vocabulary 27, block size 16, n_embd = n_embd2 = 64):
# parameters (counted from makemore.py; LSTM and WaveNet have no makemore model: the figures
# are the ladder's parameter budgets for them), test NLL and ms per step at 20,000 steps
MAKEMORE = {
    # makemore has no count bigram: it is compared with makemore's neural bigram's NLL
    "bigram": {"params": None, "nll": 2.450, "ms": None},
    "bigram-neural": {"params": 729, "nll": 2.450, "ms": 0.9},
    "bow": {"params": 12_827, "nll": 2.156, "ms": 1.9},
    "mlp": {"params": 69_147, "nll": 2.030, "ms": 6.0},
    "rnn": {"params": 11_803, "nll": 2.056, "ms": 3.9},
    "gru": {"params": 28_315, "nll": 1.999, "ms": 8.4},
    "lstm": {"params": 40_000, "nll": None, "ms": None},
    "wavenet": {"params": 80_000, "nll": None, "ms": None},
}


@dataclass
class LadderConfig:
    models: str = ",".join(LADDER)           # comma-separated names in baselines.MODELS
    config_dir: str = "experiments/configs/lm"  # where <prefix>_<model>.toml live
    prefix: str = "names"                    # config files are <config_dir>/<prefix>_<model>.toml
    out_dir: str = "runs/ladder"             # each model's run goes to <out_dir>/<model>
    table: str = "research/ladder/results.md"  # the generated table (bench.md beside it)
    collect: bool = False                    # only read the runs already in out_dir; train nothing
    bench: bool = False                      # measure ms per optimizer step instead (short runs, bench_steps each)
    bench_steps: int = 200                   # steps per model for --bench
    max_steps: int = 0                       # 0 = each config's own; else override (quick checks)
    dataset: str = ""                        # "" = each config's own (names); else override (split reset too)
    data_dir: str = ""                       # where real corpora are found (else $TEXTDUEL_DATA_DIR, ...)
    num_samples: int = 5                     # samples per model in the table
    note: str = ""                           # a line for the table's header, e.g. how busy the machine was
    progress: bool = True                    # train_lm's progress bars

    def __post_init__(self):
        names = [m for m in self.models.split(",") if m]
        unknown = [m for m in names if m not in MODELS]
        if not names or unknown:
            raise ValueError(f"models must name registered models, got {unknown or self.models!r}; "
                             f"known: {', '.join(sorted(MODELS))}")
        if self.collect and self.bench:
            raise ValueError("give at most one of --collect true and --bench true")
        if self.bench_steps <= 0 or self.max_steps < 0 or self.num_samples < 0:
            raise ValueError("bench_steps must be > 0, max_steps and num_samples >= 0")

    @property
    def model_list(self) -> list[str]:
        return [m for m in self.models.split(",") if m]


def config_path(cfg: LadderConfig, model: str) -> Path:
    path = Path(cfg.config_dir) / f"{cfg.prefix}_{model}.toml"
    if not path.is_file():
        raise cfglib.ConfigError(f"no config for {model}: {path} does not exist")
    return path


def train_argv(cfg: LadderConfig, model: str, out_dir: str, max_steps: int = 0) -> list[str]:
    """train_lm's command line for one rung: its config file, then this command's overrides."""
    argv = ["--config", str(config_path(cfg, model)), "--out_dir", out_dir, "--run_name", model,
            "--progress", str(cfg.progress).lower()]
    if max_steps:
        argv += ["--max_steps", str(max_steps)]
    if cfg.dataset:
        argv += ["--dataset", cfg.dataset, "--split="]
    if cfg.data_dir:
        argv += ["--data_dir", cfg.data_dir]
    return argv


def read_rung(run_dir: Path, num_samples: int) -> dict | None:
    """One finished run's figures, or None if it has not finished (no metrics.json)."""
    if not (run_dir / "metrics.json").is_file():
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    samples_file = run_dir / "samples.txt"
    samples = samples_file.read_text().splitlines()[:num_samples] if samples_file.is_file() else []
    return {"model": config["train"]["model"], "train": config["train"], "model_config": config["model"],
            "metrics": metrics, "samples": samples}


def _fmt(v, spec, none="—"):
    return none if v is None else format(v, spec)


def _wall(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def results_table(runs: list[dict], note: str = "") -> str:
    """The markdown results table (and samples) of the given finished runs, in their order
    (main passes the runs of the config's models that have finished)."""
    lines = ["# The autoregressive ladder: results", "",
             "Generated by `python -m experiments.ladder` from the runs' own metrics.json, config.json and",
             "samples.txt; do not edit by hand. Test NLL is of the best-on-validation checkpoint, in nats per",
             "token (per character on names, <eos> included, padding excluded). ms/step is the mean time of an",
             "optimizer step during the run (forward, backward, update; no evaluation). The count bigram is",
             "fitted in one counting pass over the training split: no steps, and no step time.", ""]
    if note:
        lines += [note, ""]
    lines += [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}.", "",
              "| model | parameters (makemore's) | dataset | steps | wall time | ms/step (makemore's) | val NLL | "
              "test NLL | bound | makemore's test NLL | within bound |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, t, met = r["model"], r["train"], r["metrics"]
        on_names = t["dataset"] == "names" and t["split"] in ("", "makemore")
        ref = MAKEMORE.get(m, {}) if on_names else {}
        bound = BOUNDS.get(m) if on_names else None
        nll = met["test/nll"]
        params = f"{met['params']:,}"
        if m == "bigram":
            params = f"0 ({r['model_config']['vocab_size'] ** 2:,} counts)"
        ref_params = ref.get("params")
        limit = f" (≤ {ref_params:,})" if m in ("lstm", "wavenet") and ref_params else (
            f" ({ref_params:,})" if ref_params else "")
        ms = met.get("ms_per_step")
        ms_text = "closed form" if m == "bigram" else f"{_fmt(ms, '.2f')} ({_fmt(ref.get('ms'), '.1f')})"
        within = "—" if bound is None else ("yes" if nll <= bound else "**no**")
        lines.append(
            f"| {m} | {params}{limit} | {t['dataset']}{'/' + t['split'] if t['split'] else ''} | {met['steps']:,} | "
            f"{'—' if m == 'bigram' else _wall(met['train_seconds'])} | {ms_text} | "
            f"{met['val/nll_best']:.4f} | **{nll:.4f}** | {_fmt(bound, '.2f')} | {_fmt(ref.get('nll'), '.3f')} | {within} |")
    lines += ["", "## Samples", "", "The first samples each run drew at the end (temperature 1, from the best checkpoint).", ""]
    for r in runs:
        lines.append(f"- **{r['model']}**: " + ", ".join(f"`{s}`" if s else "`(empty)`" for s in r["samples"]))
    lines += ["", "## Settings", "", "| model | lr → min_lr | warmup | weight decay | model config |", "|---|---|---|---|---|"]
    for r in runs:
        t = r["train"]
        model_cfg = ", ".join(f"{k}={v}" for k, v in r["model_config"].items())
        if r["metrics"]["steps"] == 0:  # fitted in closed form: no optimizer settings apply
            lines.append(f"| {r['model']} | closed form | — | — | {model_cfg} |")
        else:
            lines.append(f"| {r['model']} | {t['lr']:g} → {t['min_lr']:g} | {t['warmup_steps']} | "
                         f"{t['weight_decay']:g} | {model_cfg} |")
    return "\n".join(lines) + "\n"


def bench_table(rows: list[dict], steps: int) -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = ["# The autoregressive ladder: step time", "",
             f"Generated by `python -m experiments.ladder --bench true --bench_steps {steps}`: each model trains "
             f"{steps} steps on its config, one after the other; ms/step is the mean optimizer step (forward, "
             "backward, update; no evaluation).", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             f"{torch.get_num_threads()} torch threads; load average at the end (1/5/15 min): {load}.", "",
             "| model | parameters | ms/step | makemore's ms/step |", "|---|---|---|---|"]
    for r in rows:
        ref = MAKEMORE.get(r["model"], {}).get("ms")
        ms = "closed form" if r["ms"] is None else f"{r['ms']:.2f}"
        lines.append(f"| {r['model']} | {r['params']:,} | {ms} | {_fmt(ref, '.1f')} |")
    return "\n".join(lines) + "\n"


def parse_args(argv) -> dict:
    return cfglib.parse({"ladder": LadderConfig(), **jobs.sections()}, argv)


def main(argv=None) -> Path:
    sections = parse_args(argv)
    cfg, launch = sections["ladder"], (sections["launch"], sections["slurm"])
    table_path = Path(cfg.table)
    table_path.parent.mkdir(parents=True, exist_ok=True)

    if cfg.bench:
        rows = []
        bench_dir = str(Path(cfg.out_dir) / "bench")
        for model in cfg.model_list:
            metrics = lm_trainer.main(train_argv(cfg, model, bench_dir, max_steps=cfg.bench_steps)
                                    + ["--eval_interval", str(cfg.bench_steps), "--num_samples", "1"])
            rows.append({"model": model, "params": metrics["params"], "ms": metrics.get("ms_per_step")})
        out = table_path.parent / "bench.md"
        write_text(out, bench_table(rows, cfg.bench_steps))
        print(out.read_text())
        return out

    if not cfg.collect:  # one cell per rung, under the launcher (inline: one after another, as always)
        cells = []
        for model in cfg.model_list:
            argv = train_argv(cfg, model, cfg.out_dir, max_steps=cfg.max_steps)
            cells.append(jobs.Cell(model, Path(cfg.out_dir) / "jobs" / model, "experiments.trainers.lm:main",
                                   {"argv": argv}, resume_kwargs={"argv": argv + ["--resume", "true"]},
                                   run_dir=Path(cfg.out_dir) / model, tasks=launch[1].tasks_per_job))
        jobs.ready(*launch)
        if jobs.launch(cells, *launch) is None:  # submitted without waiting
            print("when they have finished, write the table with: python -m experiments.ladder --collect true "
                  f"--out_dir {cfg.out_dir} --models {cfg.models}")
            return table_path

    runs = []
    for model in cfg.model_list:
        run = read_rung(Path(cfg.out_dir) / model, cfg.num_samples)
        if run is None:
            print(f"{model}: no finished run in {Path(cfg.out_dir) / model} (no metrics.json); left out of the table")
        else:
            runs.append(run)
    if not runs:
        raise SystemExit(f"no finished runs under {cfg.out_dir}; train them first (without --collect)")
    write_text(table_path, results_table(runs, cfg.note))
    print(table_path.read_text())
    print(f"table written to {table_path}")
    return table_path


if __name__ == "__main__":
    cli.run(main)
