"""Figures of the training diagnostics (experiments.diagnostics): the activation and
gradient distributions of one step, and the update:data ratio and the saturation of every
layer over training. What each statistic is: experiments/diagnostics.py's docstring;
how it is measured: experiments/scoring/probes.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from experiments.reporting.events import read_events

# the scalar tags scoring.probes.log_stats writes; all of a run's histograms are read (the trainers
# write none but log_stats's)
DIAGNOSTIC_PREFIXES = ("activation/", "gradient/", "ratio/")


def read_recorded(run_dir: str | Path) -> dict:
    """The diagnostics recorded in a run's TensorBoard events: {"scalars": {tag: (steps, values)},
    "histograms": {tag: (step, bucket_limits, bucket_counts)}} (the last histogram of each tag)."""
    return read_events(run_dir, prefixes=DIAGNOSTIC_PREFIXES, histograms=True)


def _cdf(limits, counts):
    """TensorBoard buckets (right edges, counts; the first bucket is an empty one that only
    marks where the support starts) -> (x, cumulative share), piecewise linear in between."""
    limits, counts = np.asarray(limits, dtype=float), np.asarray(counts, dtype=float)
    keep = np.isfinite(limits)
    cum = np.cumsum(counts[keep])
    return limits[keep], cum / max(cum[-1], 1e-30)


def _plot_distributions(ax, entries, legend, bins: int = 80):
    """Overlay each (name, (step, limits, counts)) as a density on one grid of equal bins.
    TensorBoard's buckets grow exponentially away from 0, so each bucket's count is spread
    evenly over its width (the CDF interpolated linearly) before re-binning. The range
    covers the central 99.8% of every distribution."""
    cdfs = [(name, *_cdf(limits, counts)) for name, (_, limits, counts) in entries if sum(counts) > 0]
    if not cdfs:
        return
    lo = min(np.interp(0.001, F, x) for _, x, F in cdfs)
    hi = max(np.interp(0.999, F, x) for _, x, F in cdfs)
    if hi <= lo:
        lo, hi = lo - 1e-6, hi + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    for name, x, F in cdfs:
        ax.plot(mids, np.diff(np.interp(edges, x, F, left=0.0, right=1.0)) / width, label=legend(name))
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.legend(fontsize=6, ncol=2 if len(cdfs) > 12 else 1)


def _latest(scalars, tag):
    series = scalars.get(tag)
    return series[1][-1] if series and series[1] else math.nan


def figures_from_recorded(data: dict, out_dir: str | Path, title: str = "", history: dict | None = None) -> list[Path]:
    """activations.png (one panel per kind of output) and gradients.png (the 2-D weights,
    as in the lecture): the last recorded distributions, legends with each layer's
    statistics; update_data.png and saturation.png: over training, from `history`
    (default: data's own scalars). `data` is shaped as `read_recorded` returns it (fresh
    statistics: scoring.probes.stats_to_recorded)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scalars, hists = data["scalars"], data["histograms"]
    history = scalars if history is None else history
    written = []

    def entries(prefix):
        return sorted((t[len(prefix):], v) for t, v in hists.items() if t.startswith(prefix))

    def save(fig, path):
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    activations = entries("activation/")
    if activations:
        kinds = {}  # kind of output -> its layers, one panel each
        for kind_name, h in activations:
            kind, _, name = kind_name.partition("/")
            kinds.setdefault(kind, []).append((name, h))
        fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 4 * len(kinds)), squeeze=False)
        for ax, (kind, group) in zip(axes[:, 0], sorted(kinds.items())):
            _plot_distributions(ax, group, lambda n: (
                f"{n}: mean {_latest(scalars, f'activation/mean/{n}'):+.2f}, std "
                f"{_latest(scalars, f'activation/std/{n}'):.2f}, saturated "
                f"{100 * _latest(scalars, f'activation/saturation/{n}'):.1f}%"))
            ax.set_title(f"{title} {kind} outputs (step {group[0][1][0]})".strip())
        save(fig, out_dir / "activations.png")

    gradients = entries("gradient/")
    weights = [(n, h) for n, h in gradients if f"ratio/grad_data/{n}" in scalars] or gradients
    if weights:
        fig, ax = plt.subplots(figsize=(11, 5))
        _plot_distributions(ax, weights, lambda n: (
            f"{n}: std {_latest(scalars, f'gradient/std/{n}'):.2e}"
            + (f", grad:data {_latest(scalars, f'ratio/grad_data/{n}'):.2e}" if f"ratio/grad_data/{n}" in scalars else "")))
        ax.set_title(f"{title} gradient distribution of the weights (step {weights[0][1][0]})".strip())
        save(fig, out_dir / "gradients.png")

    def over_time(prefix, path, ylabel, heading, reference=None):
        series = sorted((t[len(prefix):], v) for t, v in history.items() if t.startswith(prefix))
        if not series:
            return
        fig, ax = plt.subplots(figsize=(11, 5))
        for name, (steps, values) in series:
            ax.plot(steps, values, label=name)
        if reference is not None:
            ax.axhline(reference, color="k", linestyle="--", linewidth=1)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} {heading}".strip())
        ax.legend(fontsize=6, ncol=2 if len(series) > 12 else 1)
        save(fig, path)

    over_time("ratio/update_data/", out_dir / "update_data.png", "log10(std(update) / std(weight))",
              "update:data ratio of the 2-D weights (about -3 is healthy)", reference=-3.0)
    over_time("activation/saturation/", out_dir / "saturation.png", "share saturated",
              "activation saturation per layer over training")
    return written
