"""A transformer-encoder discriminator over sentences given as vocabulary distributions.

The input is (B, T, V): one-hot rows for real sentences, relaxed samples for fakes (see
gan/relax.py). The first layer is a linear map from the vocabulary to the width,
inp @ W with W (V, C), which for a one-hot row is exactly the embedding lookup W[id]; so
token ids (B, T) are accepted too and looked up in the same weight. Then learned
positional embeddings, pre-LayerNorm blocks of bidirectional self-attention (Vaswani et
al. 2017; every position sees every valid position, a key padding mask hides the rest;
written out so that gradient penalties can differentiate it twice)
and a GELU feed-forward network, and a score read from a CLS token (as in BERT, Devlin et
al. 2019) or from the mean over valid positions. The score is a raw logit (B,), for any loss in
gan/losses.py. With `Discriminator(config, latent_dim=k)`, k > 0, a second linear head on
the same pooled features predicts the z a fake was generated from (InfoGAN's Q, see losses.info_loss).

`spectral_norm=True` wraps every linear map (the input map included) in
torch.nn.utils.parametrizations.spectral_norm (Miyato et al. 2018). LayerNorm is kept:
unlike BatchNorm it is per sample, so it is compatible with gradient penalties (Gulrajani
et al. 2017 recommend it for the critic) and behaves the same in training and evaluation.

Dimension letters: B batch, T time, V vocabulary, C channels (n_embd), nh heads, hs head size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


@dataclass
class DiscriminatorConfig:
    vocab_size: int = 0          # filled from the dataset's tokenizer
    block_size: int = 0          # longest sentence it reads; filled from the dataset
    n_layer: int = 2             # encoder blocks
    n_head: int = 4              # attention heads per block
    n_embd: int = 64             # width
    dropout: float = 0.0         # on embeddings, attention weights and residual branches
    bias: bool = True            # biases in Linear and LayerNorm
    pool: str = "cls"            # "cls": score from a CLS token; "mean": mean over valid positions
    spectral_norm: bool = False  # spectral normalisation of every linear map (Miyato et al. 2018)

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DiscriminatorConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"DiscriminatorConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DiscriminatorConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"DiscriminatorConfig.pool must be 'cls' or 'mean', got {self.pool!r}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("DiscriminatorConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with a key padding mask."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, key_mask):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # written out rather than F.scaled_dot_product_attention: the gradient penalties
        # (losses.gradient_penalty, r1_penalty) differentiate D's input gradient again, and
        # the fused SDPA kernels (flash on CPU, flash / memory-efficient on CUDA) have no
        # double backward; D reads short sentences, so the (T, T) matrix is cheap
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
        # key_mask (B, T) True = may be attended to; broadcast over heads and queries
        att = att.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        att = self.attn_dropout(F.softmax(att, dim=-1))
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class FeedForward(nn.Module):
    """The encoder block's position-wise feed-forward network: Linear(C, 4C), exact GELU, Linear(4C, C)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class EncoderBlock(nn.Module):
    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FeedForward(config)

    def forward(self, x, key_mask):
        x = x + self.attn(self.ln_1(x), key_mask)  # pre-LN, as in GPT-2
        x = x + self.mlp(self.ln_2(x))
        return x


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig, latent_dim: int = 0):
        """latent_dim > 0 adds InfoGAN's Q head predicting a z of that size; the GAN trainer sets it to
        mapping.z_dim when info_weight > 0 (it follows from those two settings, so it is not one)."""
        super().__init__()
        if latent_dim < 0:
            raise ValueError(f"latent_dim must be >= 0, got {latent_dim}")
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("DiscriminatorConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        C = config.n_embd
        # the input map W (V, C): inp @ W for distributions, W[ids] for token ids
        self.wte = nn.Embedding(config.vocab_size, C)
        # position 0 is the CLS token's in "cls" pooling; sentence tokens start at 1 either way
        self.wpe = nn.Embedding(config.block_size + 1, C)
        self.cls = nn.Parameter(torch.zeros(C)) if config.pool == "cls" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([EncoderBlock(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(C, bias=config.bias)
        self.head = nn.Linear(C, 1)
        # InfoGAN's Q network shares D's trunk (Chen et al. 2016, sec. 5): a linear head on the
        # pooled features gives the mean of a unit-variance Gaussian over z
        self.latent_head = nn.Linear(C, latent_dim) if latent_dim else None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled residual init
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if self.cls is not None:
            nn.init.normal_(self.cls, mean=0.0, std=0.02)
        if config.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    _spectral_norm(module)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, inp, mask=None, return_latent: bool = False):
        """inp: token ids (B, T) or distributions (B, T, V); mask (B, T) bool, True at the
        positions to read (None: all) -> raw scores (B,); with return_latent, (scores (B,),
        predicted z (B, latent_dim)) from the same pass (needs latent_dim > 0).

        Masked positions do not influence the score at all (keys hidden, excluded from the pool).
        """
        pooled = self.features(inp, mask)  # (B, C)
        scores = self.head(pooled).squeeze(-1)  # (B,)
        if not return_latent:
            return scores
        if self.latent_head is None:
            raise ValueError("this discriminator has no latent head: build it with "
                             "Discriminator(config, latent_dim=k), k > 0")
        return scores, self.latent_head(pooled)  # (B,), (B, latent_dim)

    def features(self, inp, mask=None):
        """The encoder's pooled representation (B, C) of ids (B, T) or distributions (B, T, V)."""
        if inp.dim() == 2:
            B, T = inp.shape
            x = self.wte(inp)  # (B, T, C) embedding lookup
        elif inp.dim() == 3:
            B, T, V = inp.shape
            if V != self.config.vocab_size:
                raise ValueError(f"input distributions have {V} entries, vocab_size is {self.config.vocab_size}")
            x = inp.to(self.wte.weight.dtype) @ self.wte.weight  # (B, T, V) @ (V, C) -> (B, T, C)
        else:
            raise ValueError(f"inp must be ids (B, T) or distributions (B, T, V), got shape {tuple(inp.shape)}")
        if T > self.block_size:
            raise ValueError(f"sentence of length {T} exceeds block_size {self.block_size}")
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=x.device)
        elif mask.shape != (B, T):
            raise ValueError(f"mask must be (B, T) = {(B, T)}, got {tuple(mask.shape)}")
        mask = mask.bool()
        pos = torch.arange(1, T + 1, device=x.device)  # (T,)
        x = x + self.wpe(pos)  # (B, T, C)
        if self.cls is not None:
            cls = (self.cls + self.wpe.weight[0]).expand(B, 1, -1)  # (B, 1, C)
            x = torch.cat([cls, x], dim=1)  # (B, 1 + T, C)
            mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), mask], dim=1)
        # a row with no valid key would make attention 0/0 = NaN; let such a row (never a
        # real or sampled sentence: those hold at least <eos>) attend to everything instead
        key_mask = mask | ~mask.any(dim=1, keepdim=True)
        x = self.drop(x)
        for block in self.h:
            x = block(x, key_mask)
        x = self.ln_f(x)
        if self.cls is not None:
            pooled = x[:, 0]  # (B, C)
        else:
            # mean over valid positions; a row with none reads zeros rather than NaN
            m = mask.to(x.dtype)[..., None]  # (B, T, 1)
            pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, C)
        return pooled
