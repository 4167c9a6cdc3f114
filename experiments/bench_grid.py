"""The launchers, measured: one literature grid (2 models x 3 training seeds) run inline, then with
`--launcher local --jobs 2` (and, with --slurm true, on a SLURM cluster), the wall times side by
side and every result compared with inline's.

    OMP_NUM_THREADS=1 python -m experiments.bench_grid                 # inline, then local --jobs 2
    OMP_NUM_THREADS=1 python -m experiments.bench_grid --slurm true    # and --launcher slurm
    python -m experiments.bench_grid --max_steps 300 --seeds 1,2       # a quick look

The grid: experiments.literature on `numbers` with gpt2 and lstm, `max_steps` steps each and
max_minutes 0 (so that the machine's load cannot change how far a run trains), every other
setting the comparison's default. Each launcher's run is a fresh command into its own folder
(out_dir/<launcher>/), timed from start to exit. Inline runs at one torch thread, the count each
of local's two jobs gets on two cores, so that the results can be equal: every row's metrics,
samples and sweeps, and the table, are compared with inline's, timings, paths and the command
aside. The figures and the commands go to `out` (a markdown file).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.core import cli
from experiments.core import config as cfglib
from experiments.core.checkpoint import write_text
from experiments.jobs.cells import differences


@dataclass
class GridBenchConfig:
    max_steps: int = 3000             # optimizer steps per model
    seeds: str = "1,2,3"              # training seeds
    models: str = "gpt2,lstm"         # the comparison's entries
    jobs: int = 2                     # local's jobs at once
    slurm: bool = False               # also run the grid with --launcher slurm (a cluster must answer)
    out_dir: str = "runs/bench-grid"  # each launcher's runs go to out_dir/<launcher>/
    out: str = "research/jobs/grid.md"  # the figures, as markdown ("" = print only)

    def __post_init__(self):
        if self.max_steps <= 0 or self.jobs < 1:
            raise ValueError("max_steps and jobs must be positive")


def grid_argv(cfg: GridBenchConfig, out_dir: Path) -> list[str]:
    return ["--dataset", "numbers", "--models", cfg.models, "--literature.seeds", cfg.seeds,
            "--max_steps", str(cfg.max_steps), "--max_minutes", "0", "--eval_interval", str(max(1, cfg.max_steps // 4)),
            "--out_dir", str(out_dir), "--literature.table_dir", str(out_dir / "table")]


def run_grid(cfg: GridBenchConfig, launcher: str, extra: list[str]) -> dict:
    """One fresh command of the grid under a launcher -> {launcher, seconds, command, folder}."""
    out_dir = Path(cfg.out_dir) / launcher
    shutil.rmtree(out_dir, ignore_errors=True)
    argv = [sys.executable, "-m", "experiments.literature", *grid_argv(cfg, out_dir), "--launcher", launcher, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1") if launcher == "inline" else dict(os.environ)
    out_dir.mkdir(parents=True)
    print(f"--- {launcher}: {' '.join(argv[1:])}", flush=True)
    t0 = time.time()
    with open(out_dir / "command.log", "w") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"the {launcher} grid failed (exit status {done.returncode}); its output: "
                         f"{out_dir / 'command.log'}")
    print(f"    {seconds:.0f} s", flush=True)
    return {"launcher": launcher, "seconds": seconds, "command": " ".join(["python", *argv[1:]]), "folder": out_dir}


def results_files(folder: Path) -> dict[str, Path]:
    """The grid's results.json files, by their place under the folder."""
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("results.json")) if "jobs" not in p.parts}


def compare_results(base: Path, other: Path) -> list[str]:
    """Where other's results differ from base's (timings, paths and commands aside)."""
    a, b = results_files(base), results_files(other)
    out = [f"{name}: only in one of the runs" for name in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        out += [f"{name}: {d}" for d in differences(json.loads(a[name].read_text()), json.loads(b[name].read_text()),
                                                      roots=(str(base), str(other)))]
    return out


def parse_args(argv) -> GridBenchConfig:
    return cfglib.parse({"bench": GridBenchConfig()}, argv)["bench"]


def main(argv=None):
    cfg = parse_args(argv)
    runs = [run_grid(cfg, "inline", []), run_grid(cfg, "local", ["--jobs", str(cfg.jobs)])]
    if cfg.slurm:
        runs.append(run_grid(cfg, "slurm", ["--slurm.cpus_per_job", "1", "--slurm.time_min", "30"]))
    base = runs[0]
    n_cells = len(cfg.models.split(",")) * len(cfg.seeds.split(","))
    lines = ["# The launchers on one grid", "",
             f"Generated by `python -m experiments.bench_grid` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
             f"{os.cpu_count()} CPUs): experiments.literature on `numbers`, models {cfg.models}, seeds {cfg.seeds} "
             f"({n_cells} training cells and the judge's), {cfg.max_steps:,} steps each, max_minutes 0. Inline at one "
             "torch thread; each local job at cores / jobs threads.", "",
             "| launcher | wall time | of inline's | results equal to inline's |", "|---|---|---|---|"]
    for run in runs:
        diffs = compare_results(base["folder"], run["folder"]) if run is not base else []
        run["diffs"] = diffs
        equal = "—" if run is base else ("yes" if not diffs else f"**no** ({len(diffs)} differences)")
        lines.append(f"| {run['launcher']} | {run['seconds']:.0f} s | {run['seconds'] / base['seconds']:.2f} | {equal} |")
    lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in runs]
    for run in runs[1:]:
        if run["diffs"]:
            lines += ["", f"Differences of {run['launcher']} (first 20):", ""] + [f"- {d}" for d in run["diffs"][:20]]
    text = "\n".join(lines) + "\n"
    print(text)
    if cfg.out:
        write_text(cfg.out, text)
        print(f"written to {cfg.out}")
    return runs


if __name__ == "__main__":
    cli.run(main)
