"""TextDuel's generators beside the published text-GAN tables: the same comparison run once per
training seed, then one table of mean ± seed standard deviation beside the papers' rows.

    python -m experiments.literature --config experiments/configs/literature/seqgan_oracle.toml
    python -m experiments.literature --config experiments/configs/literature/coco.toml
    python -m experiments.literature --config experiments/configs/literature/seqgan_oracle.toml --reuse true

The file is a comparison's (experiments/compare.py: [compare], [scorer], [models.<entry>],
[published."<row>"]) plus a [literature] section (LiteratureConfig below). For every seed the
comparison runs into runs/<experiment>-seed<seed>/ (its own report.md there); then the table,
its figures (the models at their means with seed error bars, the training curves of every
seed) and results.json go to [literature] table_dir. --reuse true reuses finished runs (and
trains only what is missing), so a table can be regenerated or extended without retraining.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments import jobs
from experiments.studies import comparison
from experiments.core import cli
from experiments.core import config as cfglib
from experiments.reporting.literature import published, summarize, write_literature_report


@dataclass
class LiteratureConfig:
    title: str = "TextDuel beside the published figures"
    seeds: str = "1,2,3"                    # training seeds, one comparison each
    columns: str = "nll_oracle,nll_test"    # metrics of the table (comparison metric names)
    axes: str = "nll_oracle,nll_test"       # x, y of the scatter figure
    curve_tag: str = "eval/nll_oracle"      # the TensorBoard tag drawn over training
    table_dir: str = "runs/literature"      # report.md, results.json and figures go here
    notes: str = ""                         # protocol and budgets against the papers', printed under the table

    def __post_init__(self):
        self.seed_list()
        if len(self.axis_list()) != 2:
            raise ValueError(f"literature.axes must name two metrics, x and y, got {self.axes!r}")

    def seed_list(self) -> list[int]:
        return comparison.seeds(self.seeds, "literature.seeds")

    def axis_list(self) -> list[str]:
        return [a.strip() for a in self.axes.split(",") if a.strip()]


def parse_args(argv):
    """-> (sections: compare, scorer, literature, launch, slurm; [(entry, family, settings)]; published rows)."""
    return comparison.parse_sections(*cfglib.read_cli(argv), extra={"literature": LiteratureConfig()})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.time()
    sections, entries, published_table = parse_args(argv)
    cfg, lit = sections["compare"], sections["literature"]
    base = cfg.experiment or f"literature-{Path(cfg.dataset).stem}"
    command = "python -m experiments.literature " + " ".join(argv)
    launch = (sections["launch"], sections["slurm"])
    jobs.ready(*launch)
    studies, experiments = [], []
    for seed in lit.seed_list():  # every seed's checks before any cell starts
        experiments.append(f"{base}-seed{seed}")
        print(f"=== seed {seed}: comparison {experiments[-1]} ===")
        seed_cfg = dataclasses.replace(cfg, seed=seed, experiment=experiments[-1], report_dir="")
        studies.append(comparison.prepare(seed_cfg, sections["scorer"], entries, published_table,
                                          command=f"{command} (seed {seed})", plan=studies[0].plan if studies else None))
    # one judge for every seed (it does not depend on the training seed), and every seed's entries
    judge = comparison.judge_cell(studies[0].cfg, sections["scorer"], studies[0].corpus,
                                  studies[0].runs_dir / "jobs" / "judge")
    cells, reuse = [judge], set()
    for seed, study in zip(lit.seed_list(), studies):
        cells += comparison.entry_cells(study, judge, prefix=f"seed{seed}/", tasks=launch[1].tasks_per_job)
        reuse |= comparison.reusable(study, judge, prefix=f"seed{seed}/")
    results = comparison.launch_cells(cells, reuse, launch, command,
                                      [s.report for s in studies] + [Path(lit.table_dir) / "report.md"])
    if results is None:  # submitted without waiting
        return {"submitted": [c.name for c in cells]}
    per_seed = [comparison.finish(study, results[judge.name], [results[f"seed{seed}/{name}"] for name, _, _ in entries])
                for seed, study in zip(lit.seed_list(), studies)]
    columns = [c.strip() for c in lit.columns.split(",") if c.strip()]
    summary = {"title": lit.title, "command": command, "date": time.strftime("%Y-%m-%d"),
               "dataset": per_seed[0]["dataset"], "seeds": lit.seed_list(), "columns": columns,
               "axes": lit.axis_list(), "curve_tag": lit.curve_tag, "notes": lit.notes,
               "experiments": experiments, "threads": torch.get_num_threads(),
               "wall_minutes": (time.time() - t0) / 60,
               "rows": summarize(per_seed, columns) + published(published_table)}
    report = write_literature_report(Path(lit.table_dir), summary)
    print(f"literature table: {report}")
    return summary


if __name__ == "__main__":
    cli.run(main)
