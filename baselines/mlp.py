"""MLP language model (Bengio et al. 2003, "A Neural Probabilistic Language Model").

As in makemore's `MLP` and its lectures (parts 2 and 3): the embeddings of the last
`context` tokens are concatenated, passed through one tanh hidden layer and an output
layer. Positions before the start of the sequence are a special <blank> token, an extra
embedding row at index vocab_size (makemore's choice), so "before the sequence" is
distinct from <bos>.

The model runs on whole sequences: for every position t it reads the window
idx[t - context + 1 .. t] (oldest first), gathered for all T positions at once by
unfolding the left-padded sequence, so one forward gives (B, T, V) logits.

The three things makemore part 3 teaches about training this network are config
switches (all on by default, the lecture's end state):
- `kaiming_init`: hidden weights ~ N(0, 1) * (5/3) / sqrt(fan_in), the Kaiming init with
  tanh's gain, instead of the lecture's starting point N(0, 1), which saturates the tanh;
- `scale_output_init`: output weights ~ N(0, 1) * 0.01 and bias 0, so the first loss is
  about ln(V) rather than large and confidently wrong; off gives N(0, 1) weights and bias;
- `batchnorm`: BatchNorm (Ioffe & Szegedy 2015) on the hidden pre-activations (the linear
  then has no bias, which BatchNorm's shift makes redundant). Running statistics are used
  in eval mode, so sampling never depends on the rest of the batch.

Padding and BatchNorm: during training the batch statistics are taken only over
positions whose input is not <pad> (`MaskedBatchNorm1d`, the validity mask derived from
idx), so right-padding does not shift them. In training mode BatchNorm still couples the
positions and rows of a batch through its statistics (as in any BatchNorm network), so
strict causality holds in eval mode.

Dimension letters: B batch, T time, K context, C embedding width (n_embd), H hidden
width (n_embd2), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.loss import lm_loss
from datasets.tokenizers import PAD_ID


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over every dimension but the last, with statistics from valid rows only.

    x (..., C); `mask`, a bool tensor shaped like the leading dimensions of x (e.g. (B, T)
    for x (B, T, C), or (N,) for x (N, L, C)), marks the rows that count towards the batch
    statistics in training (all of them when None). For a (N, C) input
    without a mask this is `nn.BatchNorm1d`: normalisation with the biased variance,
    running variance updated with the unbiased one. A 3-D input (N, L, C) is reduced
    over both N and L, the fix makemore part 5 makes to its own BatchNorm. Parameter and
    buffer names are nn.BatchNorm1d's (weight, bias, running_mean, running_var).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x, mask=None):
        if self.training:
            flat = x.reshape(-1, x.size(-1)).float()  # (N, C); statistics in float32 even under autocast
            if mask is not None:
                trailing = (1,) * (x.dim() - 1 - mask.dim())
                keep = mask.reshape(mask.shape + trailing).expand(x.shape[:-1]).reshape(-1)  # (N,)
                flat = flat[keep] if bool(keep.any()) else flat  # an all-padding batch: use everything
            n = flat.size(0)
            if n < 2:
                raise ValueError("MaskedBatchNorm1d needs more than one valid value per channel in training")
            mean = flat.mean(dim=0)                # (C,)
            var = flat.var(dim=0, unbiased=False)  # (C,)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * n / (n - 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias).to(x.dtype)


@dataclass
class MLPConfig:
    vocab_size: int = 0           # filled from the dataset's tokenizer
    block_size: int = 0           # longest sequence the trainer feeds; filled from the dataset
    context: int = 8              # previous tokens the MLP sees (window size K; Bengio et al.: n - 1)
    n_embd: int = 64              # embedding width per token (makemore: 64)
    n_embd2: int = 128            # hidden width (with context 8, ~72k params on names, makemore's MLP budget)
    kaiming_init: bool = True     # hidden weights N(0,1) * (5/3)/sqrt(fan_in); off: the lecture's plain N(0,1)
    scale_output_init: bool = True  # output weights N(0,1) * 0.01, bias 0; off: N(0,1) for both
    batchnorm: bool = True        # BatchNorm on the hidden pre-activations (running stats in eval mode)

    def __post_init__(self):
        for name in ("context", "n_embd", "n_embd2"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MLPConfig.{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("MLPConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


class MLP(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("MLPConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        self.blank = config.vocab_size  # the <blank> token before the sequence: an extra embedding row
        fan_in = config.context * config.n_embd
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)  # N(0, 1), as in the lecture
        self.hidden = nn.Linear(fan_in, config.n_embd2, bias=not config.batchnorm)
        self.bn = MaskedBatchNorm1d(config.n_embd2) if config.batchnorm else None
        self.batch_statistics = config.batchnorm  # training batches drawn at random (baselines/__init__.py)
        self.tanh = nn.Tanh()  # a module, not torch.tanh, so that diagnostics can hook its output
        self.lm_head = nn.Linear(config.n_embd2, config.vocab_size)
        with torch.no_grad():
            if config.kaiming_init:
                # Var(W x) = fan_in * Var(W) * Var(x): std 1/sqrt(fan_in) keeps the scale, and
                # tanh's gain 5/3 makes up for the squashing of each layer
                self.hidden.weight.normal_(0.0, (5 / 3) / fan_in ** 0.5)
                if self.hidden.bias is not None:
                    self.hidden.bias.zero_()
            else:
                self.hidden.weight.normal_(0.0, 1.0)
                if self.hidden.bias is not None:
                    self.hidden.bias.normal_(0.0, 1.0)
            if config.scale_output_init:
                # near-uniform predictions at init: loss ~ ln(V), no "hockey stick" at the start
                self.lm_head.weight.normal_(0.0, 0.01)
                self.lm_head.bias.zero_()
            else:
                self.lm_head.weight.normal_(0.0, 1.0)
                self.lm_head.bias.normal_(0.0, 1.0)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        K = self.config.context
        padded = F.pad(idx, (K - 1, 0), value=self.blank)  # (B, K - 1 + T)
        windows = padded.unfold(1, K, 1)                   # (B, T, K): windows[:, t] = idx[t-K+1 .. t]
        x = self.wte(windows).view(B, T, -1)               # (B, T, K * C)
        h = self.hidden(x)                                 # (B, T, H)
        if self.bn is not None:
            h = self.bn(h, mask=idx != PAD_ID)             # statistics over non-padding positions
        logits = self.lm_head(self.tanh(h))                # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss
