"""GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners").

A decoder-only transformer written from scratch in the manner of nanoGPT:
pre-LayerNorm blocks, causal self-attention through F.scaled_dot_product_attention,
a GELU feed-forward network (`FeedForward`; `mlp` in the parameter names), learned
positional embeddings, the token embedding tied to the output head, GPT-2's
initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)) and
dropout. Parameter names follow the GPT-2 checkpoint (transformer.wte,
transformer.h.0.attn.c_attn, ...), so published weights map onto it (after transposing
the Conv1D weights, as nanoGPT's from_pretrained does).

Dimension letters: B batch, T time (sequence), C channels (n_embd), nh heads,
hs head size (C // nh), V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.loss import lm_loss
from datasets.tokenizers import BOS_ID, EOS_ID


# Presets from makemore's transformer up to GPT-2 small. Sizes only: vocab and context
# still come from the dataset.
PRESETS = {
    "makemore": dict(n_layer=4, n_head=4, n_embd=64),        # ~0.2M params on names
    "nanogpt-cpu": dict(n_layer=4, n_head=4, n_embd=128),    # nanoGPT's shakespeare CPU config
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, dropout=0.2),  # 10.65M
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),         # 124M with the GPT-2 vocabulary
}


@dataclass
class GPTConfig:
    vocab_size: int = 0     # filled from the dataset's tokenizer
    block_size: int = 0     # context length; filled from the dataset (or set for streams)
    n_layer: int = 4        # transformer blocks
    n_head: int = 4         # attention heads per block
    n_embd: int = 64        # residual stream width
    dropout: float = 0.0    # on embeddings, attention weights and residual branches
    bias: bool = True       # biases in Linear and LayerNorm (GPT-2 has them)
    bos_as_eos: bool = False  # read <bos> with <eos>'s embedding row, as GPT-2 reads its one <|endoftext|> both
                            # ways (a Hugging Face GPT-2: baselines/hf_gpt2.py; exported exactly only with it)
    never_predict: str = ""  # comma-separated token ids whose logits are -inf: ids no text encodes to (a Hugging
                            # Face GPT-2's <pad>, <bos>, <unk> and its <|endoftext|> spelt as text)
    presets: ClassVar[dict] = PRESETS  # named sizes, applied by the trainer's --preset

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GPTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                             f"try n_head={_divisor_near(self.n_embd, self.n_head)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("GPTConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")
        check_token_ids("GPTConfig.never_predict", self.never_predict, self.vocab_size)

    def masked_ids(self) -> list[int]:
        return token_ids(self.never_predict)


def token_ids(spec: str) -> list[int]:
    """"0,1,3" -> [0, 1, 3] (a never_predict setting)."""
    return [int(i) for i in spec.split(",") if i.strip()]


def check_token_ids(name: str, spec: str, vocab_size: int) -> None:
    """Refuse a never_predict setting that is not comma-separated ids of the vocabulary."""
    try:
        ids = token_ids(spec)
    except ValueError:
        raise ValueError(f"{name} must be comma-separated token ids, got {spec!r}") from None
    if vocab_size and any(not 0 <= i < vocab_size for i in ids):
        raise ValueError(f"{name} {spec!r} names ids outside 0..{vocab_size - 1}")


def _divisor_near(n, k):
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - k))


class KVCache:
    """Keys and values of every layer for the tokens seen so far, for linear-time decoding."""

    def __init__(self, n_layer: int):
        self.k = [None] * n_layer  # each (B, nh, t, hs)
        self.v = [None] * n_layer
        self.pos = 0               # number of tokens already in the cache

    def append(self, layer, k, v):
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.dropout = config.dropout
        # query, key, value projections for all heads in one matmul (GPT-2's c_attn)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache: KVCache | None = None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            past = cache.pos
            k, v = cache.append(self.layer, k, v)  # (B, nh, past + T, hs)
            if T == 1:
                # one new query may attend to everything cached: no mask needed
                y = F.scaled_dot_product_attention(q, k, v)
            else:
                # new query i sits at absolute position past + i and sees keys 0..past + i
                mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class FeedForward(nn.Module):
    """The block's position-wise feed-forward network: Linear(C, 4C), tanh-approximated GELU, Linear(4C, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 used the tanh approximation
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FeedForward(config)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)  # pre-LN: the residual stream is never normalised
        x = x + self.mlp(self.ln_2(x))
        return x


def init_weights(module):
    """GPT-2's initialisation, for Module.apply: N(0, 0.02) weights, zero biases (the GAN generator,
    a GPT-2 with styles and noise, starts the same way)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def read_ids(idx, bos_as_eos: bool):
    """The ids the embedding reads: <bos> as <eos> when bos_as_eos (a Hugging Face GPT-2's one <|endoftext|>)."""
    return idx.masked_fill(idx == BOS_ID, EOS_ID) if bos_as_eos else idx


def mask_logits(logits, masked):
    """logits with the never-predicted ids (a long tensor, or None for none) at -inf."""
    return logits if masked is None else logits.index_fill(-1, masked, float("-inf"))


def masked_buffer(module: nn.Module, ids: list[int]) -> None:
    """Register the never-predicted ids as the module's non-persistent buffer `masked` (None when empty)."""
    module.register_buffer("masked", torch.tensor(ids, dtype=torch.long) if ids else None, persistent=False)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("GPTConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        masked_buffer(self, config.masked_ids())
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying (Press & Wolf 2017): the input embedding is the output projection
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), since each block
        # adds two branches to the residual stream and its variance would grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def num_params(self, non_embedding=True):
        """Parameters; the position table is left out by default, as in GPT-2's counts."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def init_cache(self, batch_size: int) -> KVCache:
        return KVCache(self.config.n_layer)

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        """idx (B, T) token ids -> logits (B, T, V), and the mean loss over targets != IGNORE_INDEX.

        With a cache, idx holds only the new tokens; they are placed after the cached ones.
        """
        logits = mask_logits(self.lm_head(self.hidden(idx, cache)), self.masked)  # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss

    def hidden(self, idx, cache: KVCache | None = None):
        """idx (B, T) -> the final hidden states (B, T, C), after ln_f: what lm_head reads (and
        MAUVE's features, experiments/scoring/mauve.py)."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"sequence of length {start + T} exceeds block_size {self.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(read_ids(idx, self.config.bos_as_eos))
                                  + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache)
        if cache is not None:
            cache.pos += T
        return self.transformer.ln_f(x)
