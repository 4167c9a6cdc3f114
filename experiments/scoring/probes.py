"""Training probes: activation, gradient and update statistics around one optimizer step,
for every model (what experiments.diagnostics draws; what each statistic is, and the
saturation rule of each kind of output, is in that module's docstring).

    diag = Diagnostics(model)   # experiments/trainers/lm.py, every diagnostics_interval-th step
    diag.start(); ...forward, backward, clipping...; diag.before_step(); optimizer.step()
    log_stats(logger, diag.after_step(), step)

Nothing here draws or reads TensorBoard events: the figures are in
experiments/reporting/diagnostic_figures.py, the event reader in experiments/reporting/events.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from baselines.bow import CausalBoW
from baselines.gpt2 import CausalSelfAttention
from baselines.mlp import MaskedBatchNorm1d
from baselines.rnn import GRUCell, LSTMCell, RNNCell
from datasets import DataConfig, LMData
from experiments.core.checkpoint import load_checkpoint
from experiments.generators.generation import load_model

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
    """Boolean mask of the saturated values of a, by the rule of `kind` (experiments/diagnostics.py's docstring);
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
    """Share of the values of a that are saturated, by the rule of `kind` (experiments/diagnostics.py's docstring)."""
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
    """Fresh statistics in the shape of recorded ones (reporting.events.read_events with histograms:
    scalars {tag: (steps, values)}, histograms {tag: (step, bucket right edges, counts)}), so one
    plotting path (reporting.diagnostic_figures) serves both."""
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
                scalars[f"{group}/{key}/{name}"] = ([step], [s[key]])
            if "grad_data" in s:
                scalars[f"ratio/grad_data/{name}"] = ([step], [s["grad_data"]])
    return {"scalars": scalars, "histograms": hists}
