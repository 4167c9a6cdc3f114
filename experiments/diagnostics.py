"""Training diagnostics: the plots makemore part 3 (Karpathy 2022, "Building makemore
Part 3: Activations & Gradients, BatchNorm") draws by hand, done once for every model.

    python -m experiments.train_lm --config experiments/configs/lm/names_mlp.toml --diagnostics_interval 500
    python -m experiments.diagnostics --run runs/names-mlp                  # figures from the recorded TensorBoard data
    python -m experiments.diagnostics --ckpt runs/names-mlp/last.pt         # fresh forward/backward on a training batch

What is measured, at every `diagnostics_interval`-th optimizer step of experiments.train_lm:
- activations: for every module of interest (the `PROBES` table: embeddings, linear
  layers, tanh, sigmoid, rectifiers, BatchNorm, LayerNorm, attention, the recurrent
  cells), the mean, std and saturation of its output over the whole batch (every
  position and, for a recurrent cell called once per time step, every step), and a
  histogram. Saturation depends on the kind of output (`saturation`):
    tanh (nn.Tanh, the hidden state of the RNN/GRU/LSTM cells, all in [-1, 1]):
        share of |a| > 0.97, the lecture's threshold (tanh' = 1 - a^2 < 0.06 there);
    sigmoid: share of a < 0.03 or a > 0.97 (sigmoid' < 0.03);
    rectifier (ReLU, GELU): share of a <= 0, the flat side (for ReLU: units passing no gradient);
    unbounded (linear, embedding, BatchNorm, LayerNorm, attention outputs): share of values
        more than 3 standard deviations from the layer's mean (0.27% for a Gaussian; a
        larger tail means outlier features that saturate what follows). Mean and std are
        exact; on outputs larger than HISTOGRAM_VALUES per call this share and the
        histogram come from an even subsample.
- gradients, after clipping (the gradient the optimizer uses): the std and a histogram
  for every parameter, and the grad:data ratio std(grad) / std(weight) of every 2-D weight.
- the update:data ratio of every 2-D weight, log10(std(W_after - W_before) / std(W_before)),
  from the actual change across the optimizer step (AdamW's update, weight decay
  included), so it is right for any optimizer; about -3 is the lecture's rule of thumb.

TensorBoard tags: activation/{mean,std,saturation}/<layer> (scalars), activation/<kind>/<layer>
(histogram), gradient/std/<param>, gradient/<param> (histogram), ratio/grad_data/<param>,
ratio/update_data/<param>. Layer and parameter names are those of `named_modules()` and
`named_parameters()`.

Forward hooks exist only while a diagnostics step runs: `Diagnostics.start()` registers
them and `before_step()` removes them, so the other steps run the bare model (and are
the only ones in the trainer's ms_per_step). A module type not in `PROBES` is not
watched; a model that should show an activation uses a module for it (nn.Tanh rather
than torch.tanh). Under torch.compile (CUDA), adding hooks changes the traced graph:
collect diagnostics with compile off.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from baselines.bow import CausalBoW
from baselines.gpt2 import CausalSelfAttention
from baselines.mlp import MaskedBatchNorm1d
from baselines.rnn import GRUCell, LSTMCell, RNNCell
from datasets import DataConfig, LMData
from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.core.checkpoint import load_checkpoint
from experiments.generation import load_model

# module type -> kind of output; a module is probed when it is an instance of a type here.
# Model code uses modules (nn.Tanh, not torch.tanh) where an activation should be seen.
PROBES = {
    nn.Embedding: "unbounded",
    nn.Linear: "unbounded",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU: "rectifier",
    nn.GELU: "rectifier",
    nn.BatchNorm1d: "unbounded",
    MaskedBatchNorm1d: "unbounded",
    nn.LayerNorm: "unbounded",
    nn.MultiheadAttention: "unbounded",
    CausalSelfAttention: "unbounded",
    CausalBoW: "unbounded",
    RNNCell: "tanh",   # h' = tanh(...)
    GRUCell: "tanh",   # h' = (1 - z) n + z h, a mix of tanh outputs
    LSTMCell: "tanh",  # the first output, h' = o * tanh(c')
}

TANH_SATURATED = 0.97
TAIL_SIGMAS = 3.0
HISTOGRAM_VALUES = 100_000  # at most this many values go into a histogram (an even subsample)


def kind_of(module: nn.Module) -> str | None:
    for cls in type(module).__mro__:
        if cls in PROBES:
            return PROBES[cls]
    return None


def probed_layers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, module, kind) for every module of interest, in registration order."""
    return [(name, m, kind_of(m)) for name, m in model.named_modules() if name and kind_of(m) is not None]


def _saturated(a: torch.Tensor, kind: str, mean=None, std=None) -> torch.Tensor:
    """Boolean mask of the saturated values of a, by the rule of `kind` (module docstring);
    for unbounded outputs, relative to the given mean and std (default: a's own)."""
    if kind == "tanh":
        return a.abs() > TANH_SATURATED
    if kind == "sigmoid":
        return (a < 1 - TANH_SATURATED) | (a > TANH_SATURATED)
    if kind == "rectifier":
        return a <= 0
    if kind == "unbounded":
        mean = a.mean() if mean is None else mean
        std = a.std(unbiased=False) if std is None else std
        return (a - mean).abs() > TAIL_SIGMAS * std
    raise ValueError(f"unknown kind of output {kind!r}")


def saturation(a: torch.Tensor, kind: str) -> float:
    """Share of the values of a that are saturated, by the rule of `kind` (module docstring)."""
    return _saturated(a.float(), kind).float().mean().item()


def _first_tensor(output):
    """A module's output, or the first tensor of a tuple (the LSTM cell's h of (h, c))."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for o in output:
            if isinstance(o, torch.Tensor):
                return o
    return None


def _subsample(v: torch.Tensor) -> torch.Tensor:
    stride = max(1, math.ceil(v.numel() / HISTOGRAM_VALUES))
    return v[::stride]


def std_ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    """std(num) / std(den), NaN where the denominator is 0 (e.g. a zero-initialised table)."""
    d = den.float().std(unbiased=False).item()
    return num.float().std(unbiased=False).item() / d if d > 0 else math.nan


class _Moments:
    """One layer's outputs over a step, in bounded memory: exact count, sum, sum of squares
    and (bounded kinds) saturated count over every call; values kept for the histogram and
    the tail share of unbounded outputs only up to HISTOGRAM_VALUES per call (all of them
    when smaller). A recurrent cell is called once per time step: all calls are pooled."""

    def __init__(self, kind: str):
        self.kind = kind
        self.n, self.total, self.squares, self.hits = 0, 0.0, 0.0, 0.0
        self.kept: list[torch.Tensor] = []

    def add(self, a: torch.Tensor) -> None:
        a = a.detach().flatten()
        a64 = a.double()
        self.n += a.numel()
        self.total = self.total + a64.sum()       # tensors: no device sync until `stats`
        self.squares = self.squares + (a64 * a64).sum()
        if self.kind != "unbounded":
            self.hits = self.hits + _saturated(a.float(), self.kind).sum()
        self.kept.append(_subsample(a.float()).cpu())

    def stats(self) -> dict:
        mean = float(self.total) / self.n
        std = math.sqrt(max(float(self.squares) / self.n - mean * mean, 0.0))
        kept = torch.cat(self.kept)
        if self.kind == "unbounded":  # needs the mean and std first: on the kept values
            sat = _saturated(kept, "unbounded", mean, std).float().mean().item()
        else:
            sat = float(self.hits) / self.n
        return {"mean": mean, "std": std, "saturation": sat, "kind": self.kind, "values": _subsample(kept)}


class Diagnostics:
    """Collects activation, gradient and update statistics around one optimizer step.

        diag.start()          # before the forward pass(es): registers the forward hooks
        ... forward, backward (and gradient clipping) ...
        diag.before_step()    # removes the hooks, reads the gradients, copies the 2-D weights
        optimizer.step()
        stats = diag.after_step()   # update:data ratios; returns (and keeps) everything
        log_stats(logger, stats, step)
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = probed_layers(model)
        self.handles: list = []
        self.outputs: dict[str, _Moments] = {}
        self.weights_before: dict[str, torch.Tensor] = {}
        self.stats: dict = {}

    def start(self) -> None:
        self.stop()
        self.outputs = {name: _Moments(kind) for name, _, kind in self.layers}
        for name, module, _ in self.layers:
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, inputs, output):
            a = _first_tensor(output)
            if a is not None and a.numel():
                self.outputs[name].add(a)
        return hook

    def stop(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def before_step(self) -> None:
        self.stop()
        act = {name: m.stats() for name, m in self.outputs.items() if m.n}
        self.outputs = {}
        grad = {}
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue
            g = p.grad.detach().float()
            grad[name] = {"std": g.std(unbiased=False).item() if g.numel() > 1 else 0.0,
                          "values": _subsample(g.flatten()).cpu()}
            if p.dim() == 2:
                grad[name]["grad_data"] = std_ratio(g, p.detach())
        self.weights_before = {name: p.detach().clone() for name, p in self.model.named_parameters()
                               if p.dim() == 2 and p.grad is not None}
        self.stats = {"activation": act, "gradient": grad, "update_data": {}}

    @torch.no_grad()
    def after_step(self) -> dict:
        params = dict(self.model.named_parameters())
        for name, before in self.weights_before.items():
            r = std_ratio(params[name].detach() - before, before)
            self.stats["update_data"][name] = math.log10(r) if r > 0 else math.nan
        self.weights_before = {}
        return self.stats


def log_stats(log, stats: dict, step: int) -> None:
    """Write one step's statistics with a RunLogger (scalars and histograms); NaNs are left out."""
    def scalar(tag, v):
        if v is not None and math.isfinite(v):
            log.scalar(tag, v, step)
    for name, s in stats["activation"].items():
        for key in ("mean", "std", "saturation"):
            scalar(f"activation/{key}/{name}", s[key])
        log.histogram(f"activation/{s['kind']}/{name}", s["values"], step)
    for name, s in stats["gradient"].items():
        scalar(f"gradient/std/{name}", s["std"])
        if "grad_data" in s:
            scalar(f"ratio/grad_data/{name}", s["grad_data"])
        log.histogram(f"gradient/{name}", s["values"], step)
    for name, v in stats["update_data"].items():
        scalar(f"ratio/update_data/{name}", v)


# ---- figures -----------------------------------------------------------------------


def read_run(run_dir: str | Path) -> dict:
    """The diagnostics recorded in a run's TensorBoard events: {"scalars": {tag: [(step, value)]},
    "histograms": {tag: (step, bucket_limits, bucket_counts)}} (the last histogram of each tag)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags.get("scalars", [])
               if t.startswith(("activation/", "gradient/", "ratio/"))}
    histograms = {}
    for t in tags.get("histograms", []):
        last = acc.Histograms(t)[-1]
        h = last.histogram_value
        histograms[t] = (last.step, list(h.bucket_limit), list(h.bucket))
    return {"scalars": scalars, "histograms": histograms}


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
    return series[-1][1] if series else math.nan


def figures_from_recorded(data: dict, out_dir: str | Path, title: str = "", history: dict | None = None) -> list[Path]:
    """activations.png (one panel per kind of output) and gradients.png (the 2-D weights,
    as in the lecture): the last recorded distributions, legends with each layer's
    statistics; update_data.png and saturation.png: over training, from `history`
    (default: data's own scalars). `data` is shaped as `read_run` returns it."""
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
        for name, points in series:
            ax.plot([s for s, _ in points], [v for _, v in points], label=name)
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


# ---- the command -------------------------------------------------------------------


@dataclass
class DiagnosticsConfig:
    run: str = ""           # a run directory with TensorBoard events (train_lm --diagnostics_interval N)
    ckpt: str = ""          # or a checkpoint: one fresh forward/backward on a training batch, plus its run's events
    out: str = ""           # folder for the figures; default <run>/diagnostics
    batch_size: int = 32    # --ckpt: rows of the training batch
    seed: int = 0           # --ckpt: which training batch
    data_dir: str = ""      # --ckpt: where the corpus is found (else the checkpoint's, $TEXTDUEL_DATA_DIR, ...)
    device: str = "cpu"

    def __post_init__(self):
        if self.run and self.ckpt:
            raise ValueError("give one of --run runs/<run> or --ckpt runs/<run>/last.pt, not both")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def stats_from_checkpoint(path, batch_size: int = 32, seed: int = 0, data_dir: str = "", device="cpu") -> dict:
    """One forward and backward pass of a checkpoint's model in training mode on a training
    batch of its own corpus: the activation and gradient statistics (no optimizer step)."""
    train = load_checkpoint(path).get("train_config", {})
    model, tokenizer = load_model(path, device)
    corpus = DataConfig.from_settings({**train, "data_dir": data_dir or train.get("data_dir", "")}).load()
    data = LMData(corpus, tokenizer, block_size=model.block_size)
    x, y = data.train_batch(0, batch_size, seed)
    model.train()
    diag = Diagnostics(model)
    diag.start()
    _, loss = model(x.to(device), y.to(device))
    if loss.requires_grad:  # the count bigram has nothing to differentiate
        loss.backward()
    diag.before_step()
    return diag.stats


def stats_to_recorded(stats: dict, step: int, bins: int = 100) -> dict:
    """Fresh statistics in the shape `read_run` returns, so one plotting path serves both."""
    scalars, hists = {}, {}
    for group in ("activation", "gradient"):
        for name, s in stats[group].items():
            v = s["values"].float()
            lo, hi = v.min().item(), v.max().item()
            hi = max(hi, lo + 1e-6)
            counts = torch.histc(v, bins=bins, min=lo, max=hi)
            limits = torch.linspace(lo, hi, bins + 1)[1:]  # right edges, as TensorBoard stores them
            tag = f"activation/{s['kind']}/{name}" if group == "activation" else f"gradient/{name}"
            hists[tag] = (step, limits.tolist(), counts.tolist())
            for key in ("mean", "std", "saturation") if group == "activation" else ("std",):
                scalars[f"{group}/{key}/{name}"] = [(step, s[key])]
            if "grad_data" in s:
                scalars[f"ratio/grad_data/{name}"] = [(step, s["grad_data"])]
    return {"scalars": scalars, "histograms": hists}


def main(argv=None) -> list[Path]:
    config_path, pairs = cfglib.split_cli(sys.argv[1:] if argv is None else argv)
    file_values = cfglib.load_file(config_path) if config_path else {}
    cfg = cfglib.resolve({"diagnostics": DiagnosticsConfig()}, file_values, pairs)["diagnostics"]
    if not (cfg.run or cfg.ckpt):
        raise cfglib.ConfigError("give --run runs/<run> (recorded diagnostics) or --ckpt runs/<run>/last.pt")
    run_dir = Path(cfg.run) if cfg.run else Path(cfg.ckpt).parent
    out = Path(cfg.out) if cfg.out else run_dir / "diagnostics"
    has_events = any(run_dir.glob("events.out.tfevents.*"))
    recorded = read_run(run_dir) if has_events else {"scalars": {}, "histograms": {}}
    if cfg.ckpt:
        # distributions and current statistics from the checkpoint; the histories (the
        # update:data ratio needs optimizer steps) from the run's recorded events, if any
        step = load_checkpoint(cfg.ckpt).get("step", 0)
        current = stats_to_recorded(stats_from_checkpoint(cfg.ckpt, cfg.batch_size, cfg.seed, cfg.data_dir,
                                                          runtime.resolve_device(cfg.device)), step)
        written = figures_from_recorded(current, out, f"{Path(cfg.ckpt).name} (step {step}):",
                                        history=recorded["scalars"])
    else:
        if not recorded["histograms"] and not recorded["scalars"]:
            raise SystemExit(f"{run_dir} has no recorded diagnostics; train with --diagnostics_interval N, "
                             f"or use --ckpt {run_dir}/last.pt")
        written = figures_from_recorded(recorded, out, f"{run_dir.name}:")
    if not written:
        print("nothing to plot: the model has no probed modules or parameters")
    for p in written:
        print(p)
    return written


if __name__ == "__main__":
    cli.run(main)
