"""Bigram language models, the first rung of makemore's ladder (Karpathy 2022, "makemore").

Two models that predict the next token from the current one alone:

- `CountBigram`: the maximum-likelihood bigram model in closed form, P(b | a) =
  (N[a, b] + k) / sum_b' (N[a, b'] + k), from counts N with add-k smoothing (k = 1 is
  Laplace's rule, the "model smoothing" of the makemore lecture). It has no trainable
  parameters and is never trained by gradient descent: `closed_form = True` tells the
  trainer to call `model.fit(batches)` (an iterable of (x, y) batches, e.g. one pass
  over the training loader) instead of building an optimizer. Before any fit the counts
  are all zero and the model is uniform, so its loss is exactly ln(V).
- `Bigram`: a learnable (V, V) table of logits, row a holding the logits of the token
  after a, trained by gradient descent like every other model (makemore's `Bigram`).

Both follow the protocol of `baselines/__init__.py`: `forward(idx, targets=None) ->
(logits, loss)` with the loss averaged over targets != IGNORE_INDEX.

Dimension letters: B batch, T time, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from baselines.loss import lm_loss
from datasets.tokenizers import IGNORE_INDEX


@dataclass
class CountBigramConfig:
    vocab_size: int = 0       # filled from the dataset's tokenizer
    block_size: int = 0       # longest sequence the trainer feeds; the model itself looks back one token
    smoothing: float = 1.0    # add-k smoothing of the counts (makemore: 1); 0 = raw maximum likelihood

    def __post_init__(self):
        if self.smoothing < 0:
            raise ValueError(f"CountBigramConfig.smoothing must be >= 0, got {self.smoothing}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("CountBigramConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


class CountBigram(nn.Module):
    """Bigram model fitted from counts; see the module docstring for how it is trained."""

    closed_form = True  # fitted by `fit` / `fit_counts`, not by an optimizer (it has no parameters)

    def __init__(self, config: CountBigramConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("CountBigramConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        V = config.vocab_size
        # both are buffers, so they follow .to(device) and travel in the state_dict;
        # counts in float64 so that they stay exact integers over any realistic corpus
        self.register_buffer("counts", torch.zeros(V, V, dtype=torch.float64))   # N[prev, next]
        self.register_buffer("log_probs", torch.full((V, V), -math.log(V)))   # log P(next | prev), uniform before fit

    @torch.no_grad()
    def fit_counts(self, x, y):
        """Add the bigrams (x[b, t] -> y[b, t]) with y != IGNORE_INDEX to the counts, then refresh log P."""
        self._accumulate(x, y)
        self._refresh()

    @torch.no_grad()
    def fit(self, batches, reset: bool = True):
        """Fit on an iterable of (x, y) batches (or (prev, next) id pairs); returns self.

        With reset=False the counts add to those already held.
        """
        if reset:
            self.counts.zero_()
        for x, y in batches:
            self._accumulate(torch.as_tensor(x), torch.as_tensor(y))
        self._refresh()
        return self

    def _accumulate(self, x, y):
        V = self.config.vocab_size
        keep = y != IGNORE_INDEX
        pairs = x[keep].to(self.counts.device) * V + y[keep].to(self.counts.device)  # (n,) flat index
        self.counts += torch.bincount(pairs, minlength=V * V).view(V, V).to(self.counts.dtype)

    def _refresh(self):
        smoothed = self.counts + self.config.smoothing  # (V, V)
        totals = smoothed.sum(dim=1, keepdim=True)      # (V, 1)
        # a row never seen with smoothing 0 has no evidence at all: make it uniform
        # rather than 0/0; seen rows keep log 0 = -inf for unseen successors
        smoothed = torch.where(totals > 0, smoothed, torch.ones_like(smoothed))
        self.log_probs.copy_((smoothed / smoothed.sum(dim=1, keepdim=True)).log().to(self.log_probs.dtype))

    def forward(self, idx, targets=None):
        """idx (B, T) -> logits (B, T, V) = log P(next | idx), which softmax maps back to P."""
        logits = self.log_probs[idx]  # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss


@dataclass
class BigramConfig:
    vocab_size: int = 0     # filled from the dataset's tokenizer
    block_size: int = 0     # longest sequence the trainer feeds; the model itself looks back one token

    def __post_init__(self):
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("BigramConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


class Bigram(nn.Module):
    """A (V, V) table of next-token logits trained by gradient descent (makemore's Bigram)."""

    def __init__(self, config: BigramConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("BigramConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        # zeros: every row starts uniform, so the loss at initialisation is exactly ln(V)
        self.logits = nn.Parameter(torch.zeros(config.vocab_size, config.vocab_size))

    def forward(self, idx, targets=None):
        logits = self.logits[idx]  # (B, T, V): row idx[b, t] of the table
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss
