"""Causal bag of words, the rung between the MLP and attention in makemore (Karpathy 2022).

Each position sees the uniform average of the token + position embeddings of itself and
every position before it (a lower-triangular mask, softmax over zeros: "attention" whose
weights are all equal and not learned), followed by a tanh MLP, with a residual around
each, and a linear head. The structure is makemore's `CausalBoW` / `BoWBlock` / `BoW`.

One deviation from makemore, for the loss at initialisation: the head starts with small
weights and zero bias (makemore part 3's "make the output layer less confident"), so the
initial loss is about ln(V) instead of the larger value PyTorch's default init gives to
this unnormalised residual stream.

Dimension letters: B batch, T time, C channels (n_embd), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.loss import lm_loss


@dataclass
class BoWConfig:
    vocab_size: int = 0     # filled from the dataset's tokenizer
    block_size: int = 0     # longest sequence (size of the position table); filled from the dataset
    n_embd: int = 64        # token/position embedding and residual width (makemore: 64)
    n_embd2: int = 64       # hidden width of the MLP block (makemore: 64)
    head_init_scale: float = 0.1  # head weights scaled by this at init so the first loss is ~ln(V); 1 = PyTorch default

    def __post_init__(self):
        for name in ("n_embd", "n_embd2"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BoWConfig.{name} must be positive, got {getattr(self, name)}")
        if self.head_init_scale <= 0:
            raise ValueError(f"BoWConfig.head_init_scale must be positive, got {self.head_init_scale}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("BoWConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


class CausalBoW(nn.Module):
    """Position t outputs the mean of x[:, :t+1]: uniform weights under a causal mask."""

    def __init__(self, config: BoWConfig):
        super().__init__()
        mask = torch.tril(torch.ones(config.block_size, config.block_size)).view(1, config.block_size, config.block_size)
        self.register_buffer("bias", mask, persistent=False)  # makemore's name for the mask; derived, not saved

    def forward(self, x):
        B, T, C = x.size()
        att = torch.zeros((B, T, T), device=x.device, dtype=x.dtype)
        att = att.masked_fill(self.bias[:, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)  # row t: 1/(t+1) on positions 0..t, 0 after
        return att @ x                # (B, T, T) x (B, T, C) -> (B, T, C)


class BoWBlock(nn.Module):
    """Causal bag of words, then a tanh MLP, each with a residual connection."""

    def __init__(self, config: BoWConfig):
        super().__init__()
        self.cbow = CausalBoW(config)
        self.mlp = nn.ModuleDict(dict(
            c_fc=nn.Linear(config.n_embd, config.n_embd2),
            c_proj=nn.Linear(config.n_embd2, config.n_embd),
            tanh=nn.Tanh(),  # a module (not torch.tanh) so that diagnostics can hook its output
        ))

    def mlpf(self, x):
        return self.mlp.c_proj(self.mlp.tanh(self.mlp.c_fc(x)))

    def forward(self, x):
        x = x + self.cbow(x)
        x = x + self.mlpf(x)
        return x


class BoW(nn.Module):
    def __init__(self, config: BoWConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("BoWConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.context_block = BoWBlock(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        with torch.no_grad():
            self.lm_head.weight.mul_(config.head_init_scale)
            self.lm_head.bias.zero_()

    def forward(self, idx, targets=None):
        B, T = idx.size()
        if T > self.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size {self.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        x = self.context_block(x)
        logits = self.lm_head(x)           # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss
