"""Hierarchical WaveNet-style MLP (van den Oord et al. 2016, "WaveNet: A Generative Model
for Raw Audio"), as built in makemore part 5 (Karpathy 2022, "Building makemore Part 5").

The context window of `context` tokens (8 in the lecture) is fused two at a time in
log2(context) levels, each FlattenConsecutive(2) -> Linear (no bias) -> BatchNorm ->
Tanh, then an output Linear:

    (N, 8, C) -> (N, 4, 2C) -> (N, 4, H) -> (N, 2, 2H) -> (N, 2, H) -> (N, 2H) -> (N, H) -> (N, V)

Lecture sizes: n_embd 24, n_hidden 128, context 8: ~77k parameters on names. Linear
weights start at N(0, 1/fan_in) and the output layer is scaled by 0.1 ("make the last
layer less confident"), as in the lecture. BatchNorm reduces over the batch *and* the
group dimension for 3-D inputs (the lecture's fix of its own BatchNorm) and uses running
statistics in eval mode.

On whole sequences: for every position t the window is idx[t - context + 1 .. t],
left-padded with a <blank> token (an extra embedding row at index vocab_size, as in
makemore's MLP). All B * T windows are unfolded at once and run through the lecture's
network as a batch of N = B * T examples, so the output at each position is exactly the
lecture's model applied to that position's window. (Causal dilated convolutions with
kernel 2 and dilations 1, 2, 4 compute the same thing with less work at level 1 and 2;
the unfolded form is kept because it is the lecture's model verbatim and its BatchNorm
statistics are those of the lecture's batches.)

Padding and BatchNorm: in training the batch statistics are taken only over windows
whose last input is not <pad> (their targets are the ones that count), via the
validity mask that `MaskedBatchNorm1d` takes, derived from idx. Padding windows are
still computed; their targets are ignored by the loss. In training mode BatchNorm
couples the examples of a batch through its statistics, so strict causality holds in
eval mode.

Dimension letters: B batch, T time, N = B * T windows, K context, C embedding width
(n_embd), H hidden width (n_hidden), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.loss import lm_loss
from baselines.mlp import MaskedBatchNorm1d
from datasets.tokenizers import PAD_ID


@dataclass
class WaveNetConfig:
    vocab_size: int = 0     # filled from the dataset's tokenizer
    block_size: int = 0     # longest sequence the trainer feeds; filled from the dataset
    context: int = 8        # tokens in each window; a power of two >= 8, log2(context) levels (lecture: 8)
    n_embd: int = 24        # token embedding width (lecture: 24)
    n_hidden: int = 128     # width of every level (lecture: 128)

    def __post_init__(self):
        if self.context < 8 or self.context & (self.context - 1):
            raise ValueError(f"WaveNetConfig.context must be a power of two >= 8, got {self.context}")
        for name in ("n_embd", "n_hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WaveNetConfig.{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("WaveNetConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


class FlattenConsecutive(nn.Module):
    """(N, L, C) -> (N, L / n, C * n): concatenate n consecutive vectors; drops a length-1 dim."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        N, L, C = x.shape
        x = x.view(N, L // self.n, C * self.n)
        if x.size(1) == 1:
            x = x.squeeze(1)  # (N, C * n)
        return x


class Level(nn.Module):
    """FlattenConsecutive(2) -> Linear (no bias: BatchNorm shifts) -> BatchNorm -> Tanh."""

    def __init__(self, fan_in: int, n_hidden: int):
        super().__init__()
        self.flatten = FlattenConsecutive(2)
        self.linear = nn.Linear(fan_in, n_hidden, bias=False)
        self.bn = MaskedBatchNorm1d(n_hidden)
        self.tanh = nn.Tanh()  # a module (not torch.tanh) so that diagnostics can hook its output
        nn.init.normal_(self.linear.weight, 0.0, fan_in ** -0.5)  # the lecture's Linear: randn / sqrt(fan_in)

    def forward(self, x, mask):
        return self.tanh(self.bn(self.linear(self.flatten(x)), mask=mask))


class WaveNet(nn.Module):
    batch_statistics = True  # BatchNorm in every level: training batches drawn at random (baselines/__init__.py)

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("WaveNetConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        self.blank = config.vocab_size  # the <blank> token before the sequence: an extra embedding row
        n_levels = config.context.bit_length() - 1  # log2(context)
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)
        self.levels = nn.ModuleList(
            [Level(2 * config.n_embd, config.n_hidden)]
            + [Level(2 * config.n_hidden, config.n_hidden) for _ in range(n_levels - 1)])
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)
        with torch.no_grad():
            self.lm_head.weight.normal_(0.0, config.n_hidden ** -0.5).mul_(0.1)  # less confident at init
            self.lm_head.bias.zero_()

    def forward(self, idx, targets=None):
        B, T = idx.shape
        K = self.config.context
        padded = F.pad(idx, (K - 1, 0), value=self.blank)  # (B, K - 1 + T)
        windows = padded.unfold(1, K, 1).reshape(B * T, K)  # (N, K): row b*T + t = idx[b, t-K+1 .. t]
        mask = (idx != PAD_ID).reshape(B * T)              # (N,) windows that count for BatchNorm
        x = self.wte(windows)                              # (N, K, C)
        for level in self.levels:
            x = level(x, mask)                             # (N, K/2, H), (N, K/4, H), ..., (N, H)
        logits = self.lm_head(x).view(B, T, -1)            # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss
