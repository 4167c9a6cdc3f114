"""The literature table: several comparisons of the same generators that differ only in their
training seed (experiments/studies/comparison.py, one results dict each), reduced to mean and seed
standard deviation per model and metric, beside published rows; a report with its figures.

    summarize(per_seed, columns)       -> rows: label, kind, n seeds, mean/std/values per metric,
                                          steps and training minutes per seed
    write_literature_report(...)       -> report.md, results.json, scatter.png, curves.png

Standard deviations are over seeds (n - 1 in the denominator); a model's figures are the means.
Published rows carry the values the config gives, and nothing for metrics their papers did not
report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.core.checkpoint import write_text  # noqa: E402
from experiments.reporting.events import read_scalars  # noqa: E402

LABELS = {"nll_oracle": "NLL-oracle", "nll_test": "NLL-test", "bleu2": "BLEU-2", "bleu3": "BLEU-3",
          "bleu4": "BLEU-4", "bleu5": "BLEU-5", "self_bleu2": "Self-BLEU-2", "self_bleu3": "Self-BLEU-3",
          "self_bleu4": "Self-BLEU-4", "self_bleu5": "Self-BLEU-5"}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summarize(per_seed: list[dict], columns: list[str]) -> list[dict]:
    """One row per model (and the real-data row), in the first comparison's order, over seeds."""
    rows = []
    for first in per_seed[0]["rows"]:
        if first["kind"] == "published":
            continue
        same = [next(r for r in res["rows"] if r["label"] == first["label"]) for res in per_seed]
        row = {"label": first["label"], "kind": first["kind"], "family": first["family"], "n": len(same),
               "run_dirs": [r["run_dir"] for r in same], "steps": [r["steps"] for r in same],
               "train_minutes": [None if r["train_seconds"] is None else r["train_seconds"] / 60 for r in same],
               "metrics": {}}
        for col in columns:
            values = [r["metrics"][col] for r in same if r["metrics"].get(col) is not None]
            if values:
                m, s = mean_std(values)
                row["metrics"][col] = {"mean": m, "std": s, "values": values}
        rows.append(row)
    return rows


def published(table: dict) -> list[dict]:
    return [{"label": label, "kind": "published", "n": None, "source": values["source"],
             "metrics": {k: {"mean": float(v), "std": None, "values": [float(v)]} for k, v in values.items()
                         if k != "source"}}
            for label, values in table.items()]


def sources(rows: list[dict]) -> str:
    """Where each published row's figures come from, one line each."""
    return "\n".join(f"- {r['label']}: {r['source']}" for r in rows if r["kind"] == "published")


def _cell(metric: dict | None, n, kind: str) -> str:
    if metric is None:
        return "-"
    if metric["std"] is None or n in (None, 1) or kind == "real":  # the real-data row is the same draw every seed
        return f"{metric['mean']:.3f}"
    return f"{metric['mean']:.3f} ± {metric['std']:.3f}"


def _budget(row: dict) -> str:
    if row["kind"] != "model":
        return "-"
    steps = sorted({s for s in row["steps"] if s is not None})
    minutes = [m for m in row["train_minutes"] if m is not None]
    step_text = "/".join(f"{s:,}" for s in steps) if steps else "-"
    return f"{step_text} steps, {sum(minutes) / len(minutes):.1f} min" if minutes else step_text


def table(rows: list[dict], columns: list[str]) -> str:
    head = "| | seeds | " + " | ".join(LABELS.get(c, c) for c in columns) + " | training (per seed) |"
    lines = [head, "|" + "---|" * (len(columns) + 3)]
    for r in rows:
        name = f"**{r['label']}**" if r["kind"] == "model" else r["label"]
        seeds = r["n"] if r["n"] is not None else "published"
        lines.append(f"| {name} | {seeds} | " + " | ".join(_cell(r["metrics"].get(c), r["n"], r["kind"]) for c in columns)
                     + f" | {_budget(r) if r['kind'] != 'published' else '-'} |")
    return "\n".join(lines)


def plot_scatter(rows: list[dict], x: str, y: str, path: Path) -> None:
    """Each model at its mean, with +-1 seed standard deviation on both axes; published rows as
    crosses where they report both metrics, as vertical lines where they report only x."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        mx, my = r["metrics"].get(x), r["metrics"].get(y)
        if r["kind"] == "published":
            if mx and my:
                ax.plot(mx["mean"], my["mean"], "x", color="grey")
                ax.annotate(r["label"], (mx["mean"], my["mean"]), fontsize=7, color="grey")
            elif mx:
                ax.axvline(mx["mean"], color="grey", lw=0.8, ls=":")
                ax.annotate(r["label"], (mx["mean"], 0.02), xycoords=("data", "axes fraction"), rotation=90,
                            fontsize=7, color="grey")
            continue
        if mx and my:
            ax.errorbar(mx["mean"], my["mean"], xerr=mx["std"], yerr=my["std"], fmt="o", capsize=3,
                        label=f"{r['label']} ({r['n']} seeds)")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(rows: list[dict], tag: str, path: Path) -> bool:
    """`tag` over training steps, one thin line per seed, one colour per model; False when no run logged it."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for i, r in enumerate(x for x in rows if x["kind"] == "model"):
        color = f"C{i % 10}"
        for j, run_dir in enumerate(r["run_dirs"]):
            curve = read_scalars(run_dir, tags=[tag]).get(tag)
            if curve:
                steps, values = curve
                ax.plot(steps, values, color=color, lw=1, alpha=0.8, label=r["label"] if j == 0 else None)
                drawn = True
    ax.set_xlabel("training step (every phase counted; see each trainer)")
    ax.set_ylabel(tag)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def per_seed_table(rows: list[dict], columns: list[str], seeds: list[int]) -> str:
    """Every seed's value of every metric: what the means and standard deviations are of."""
    lines = ["| | metric | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 2)]
    for r in rows:
        for c in columns:
            if c in r["metrics"] and r["kind"] == "model":
                lines.append(f"| {r['label']} | {LABELS.get(c, c)} | "
                             + " | ".join(f"{v:.4f}" for v in r["metrics"][c]["values"]) + " |")
    return "\n".join(lines)


def write_literature_report(out_dir: Path, summary: dict) -> Path:
    """report.md, results.json and the figures into out_dir. `summary`: title, command, dataset,
    seeds, columns, axes (x, y), curve_tag, notes, experiments (per-seed experiment names), rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, columns, (x, y) = summary["rows"], summary["columns"], summary["axes"]
    plot_scatter(rows, x, y, out_dir / "scatter.png")
    has_curves = plot_curves(rows, summary["curve_tag"], out_dir / "curves.png")
    seeds = summary["seeds"]
    lines = [f"# {summary['title']}", "",
             f"Generated by `{summary['command']}` ({summary['date']}, {summary['wall_minutes']:.0f} min wall "
             f"clock, {summary['threads']} thread(s)). {len(seeds)} seeds ({', '.join(map(str, seeds))}): each a "
             f"full comparison on `{summary['dataset']}` with the same settings but the training seed "
             f"(runs in {', '.join(f'`{e}`' for e in summary['experiments'])}, each with its own report). "
             "Bold rows are trained here: the mean over seeds ± the seed standard deviation; the other rows "
             "are the published figures and the real-data reference.", "",
             table(rows, columns), "", "Sources of the published rows:", "", sources(rows), "",
             summary["notes"].strip(), "",
             f"![{LABELS.get(x, x)} against {LABELS.get(y, y)}](scatter.png)", ""]
    if has_curves:
        lines += [f"![{summary['curve_tag']} during training, every seed](curves.png)", ""]
    elif (out_dir / "curves.png").is_file():  # re-rendered where the runs' events are not: the figure stays as drawn
        lines += [f"![{summary['curve_tag']} during training, every seed](curves.png)", "",
                  "(curves.png as drawn from the runs' TensorBoard events when they were trained; the events are "
                  "not where this report was re-rendered)", ""]
    lines += ["## Every seed", "", per_seed_table(rows, columns, seeds), ""]
    write_text(out_dir / "results.json", json.dumps(summary, indent=1, default=str))
    report = out_dir / "report.md"
    write_text(report, "\n".join(lines))
    return report
