"""A style-based transformer generator for text: a latent-variable language model p(x_t | x_<t, z).

StyleGAN (Karras et al. 2019, "A Style-Based Generator Architecture for Generative
Adversarial Networks") carried over to a transformer that writes a sentence one token at
a time:

- z -> mapping network -> w (gan/mapping.py), truncated towards the average w when psi < 1;
  each styled block reads its own slot of a per-block style tensor (B, n_styles, w_dim),
  n_styles = n_layer, which a single w fills by repetition.
- Input at step t: embedding of the token produced at step t-1 (<bos> at t = 0), fed
  back as a hard token without gradient, + positional embedding + a fresh Gaussian noise
  vector of noise_dim channels through a learned linear map (the per-step randomness;
  the map starts at zero, as the noise scales do).
- n_layer NoiseBlocks, post-LayerNorm (the residual sum is normalised after each sublayer,
  unlike in the pre-LN GPT-2 blocks, so the noise and the style act on a normalised stream),
  the sublayers in the order of a StyleGAN synthesis layer (computation, noise, style):
      causal self-attention; residual and LayerNorm
      noise injection: x + scale * noise, one Gaussian per token broadcast over channels,
          a learned per-channel scale initialised at zero (stylegan2-pytorch's NoiseInjection)
      style: cross-attention to style tokens; residual and LayerNorm
      feed-forward; residual and LayerNorm
  The style layer is chosen by `style_mode` from STYLE_LAYERS:
  * "cross_attn": a linear map turns w into n_style_tokens tokens of width n_embd; the
    sequence positions are the QUERIES, the style tokens the KEYS and VALUES, so every
    position reads the style and the output keeps the sequence's length;
  * "adaln": StyleGAN's AdaIN in transformer form (as in DiT, Peebles & Xie 2023):
    a LayerNorm without affine whose gain (1 + .) and bias are linear functions of w, after the
    noise, the order of StyleGAN's conv -> noise -> AdaIN.
- n_out_layers plain GPT-2 blocks (pre-LN causal self-attention + feed-forward, no style),
  a final LayerNorm and the vocabulary head, tied to the token embedding.

A generator from a pretrained GPT-2 (`gpt2_blocks`, built by `Generator.from_lm`): the post-LN
NoiseBlocks cannot start as GPT-2's pre-LN blocks (zeroing their noise and style still leaves a
LayerNorm on the residual stream), so this variant's blocks (GPT2StyleBlock) are GPT-2's own,
with the noise and the style added as residual branches that start at zero:
      x = x + attn(ln_1(x))
      x = x + scale * noise                           (the scale starts at zero)
      cross_attn: x = x + c_proj(attend(style.ln(x), style tokens))   (c_proj starts at zero)
      x = x + mlp(ln_2(x))                            adaln: mlp(ln_2(x) * (1 + gain(w)) + bias(w)),
                                                      gain and bias starting at zero (DiT's adaLN-Zero)
  At initialisation the generator computes exactly the LM's function, whatever z and the noise
  (its next-token distribution equals the LM's: tests/test_gan_from_lm.py), and the adversarial
  phase fine-tunes the pretrained LM directly, as ColdGANs (Scialom et al. 2020) start from one.
  The input noise map starts at zero in both variants; the LM's <bos> reading and never-predicted
  ids (GPTConfig.bos_as_eos, never_predict) come with it. With adaln, the generator at one style
  and zero noise is again a GPT-2 (the modulation folds into ln_2): `to_lm` gives it, which is
  what experiments.export writes for such a run.

Teacher-forced `forward(idx, targets, z=..., noise=...) -> (logits, loss)` serves MLE
pretraining and NLL estimation with the LM protocol of baselines/ (random z and noise when
not given); `sample(...)` runs free from <bos> with a KV cache (linear in length), the style
keys and values computed once per sequence, and with `relax=` returns the differentiable
distributions the discriminator reads (gan/relax.py).

Noise layout: one tensor (B, T, noise_channels), noise_channels = noise_dim + n_layer:
channels [0, noise_dim) are the input noise, channel noise_dim + i the injection noise of
NoiseBlock i. `make_noise` draws it; passing the same tensor (and the same z) reproduces
the same logits.

Dimension letters: B batch, T time, C channels (n_embd), nh heads, hs head size, V
vocabulary, S style tokens, L style layers (n_styles), N noise channels.
"""

from __future__ import annotations

import contextlib
import math
import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.gpt2 import (GPT, Block, CausalSelfAttention, FeedForward, GPTConfig, KVCache, check_token_ids,
                            init_weights, mask_logits, masked_buffer, read_ids, token_ids)
from baselines.loss import lm_loss
from baselines.sampling import keep_rows
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID
from gan.mapping import MappingConfig, MappingNetwork
from gan.relax import pad_soft


@dataclass
class GeneratorConfig:
    vocab_size: int = 0              # filled from the dataset's tokenizer
    block_size: int = 0              # longest sentence (with <eos>); filled from the dataset
    n_layer: int = 2                 # styled NoiseBlocks; each takes its own w (n_styles = n_layer)
    n_out_layers: int = 2            # plain GPT-2 blocks between the NoiseBlocks and the head
    n_head: int = 4                  # attention heads (self- and cross-attention)
    n_embd: int = 64                 # residual stream width
    noise_dim: int = 16              # per-step input noise, projected to n_embd and added to the input
    style_mode: str = "cross_attn"   # how w enters a NoiseBlock: a key of STYLE_LAYERS
    n_style_tokens: int = 4          # "cross_attn": style tokens made from w per block
    dropout: float = 0.0             # on embeddings, attention weights and residual branches
    bias: bool = True                # biases in Linear and LayerNorm
    mapping: MappingConfig = field(default_factory=MappingConfig)  # z -> w network
    gpt2_blocks: bool = False        # GPT-2's pre-LN blocks with zero-initialised noise and style branches
                                     # (GPT2StyleBlock: the generator starts as a GPT-2, Generator.from_lm);
                                     # false: the post-LN NoiseBlocks
    bos_as_eos: bool = False         # as GPTConfig's: read <bos> with <eos>'s row (from a Hugging Face GPT-2)
    never_predict: str = ""          # as GPTConfig's: comma-separated ids whose logits are -inf

    def __post_init__(self):
        if isinstance(self.mapping, dict):  # rebuilt from asdict(config), e.g. from a checkpoint
            self.mapping = MappingConfig(**self.mapping)
        if not isinstance(self.mapping, MappingConfig):
            raise TypeError(f"GeneratorConfig.mapping must be a MappingConfig or dict, got {type(self.mapping)}")
        for name in ("n_layer", "n_head", "n_embd", "noise_dim", "n_style_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GeneratorConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_out_layers < 0:
            raise ValueError(f"GeneratorConfig.n_out_layers must be >= 0, got {self.n_out_layers}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GeneratorConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.style_mode not in STYLE_LAYERS:
            raise ValueError(f"GeneratorConfig.style_mode must be one of {sorted(STYLE_LAYERS)}, "
                             f"got {self.style_mode!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GeneratorConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError("GeneratorConfig.vocab_size and block_size must be >= 0 (0 = take from the dataset)")
        check_token_ids("GeneratorConfig.never_predict", self.never_predict, self.vocab_size)


class NoiseInjection(nn.Module):
    """x + scale * noise: one N(0, 1) per token (B, T, 1), broadcast over channels, with a
    learned per-channel scale that starts at zero (the block is the identity at init)."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(n_embd))

    def forward(self, x, noise=None):
        if noise is None:
            noise = torch.randn(x.size(0), x.size(1), 1, device=x.device, dtype=x.dtype)  # (B, T, 1)
        return x + self.scale * noise


class CrossAttentionStyle(nn.Module):
    """Cross-attention from the sequence (queries) to style tokens made from w (keys, values);
    residual and LayerNorm."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        C = config.n_embd
        self.n_head = config.n_head
        self.n_tokens = config.n_style_tokens
        self.dropout = config.dropout
        self.to_tokens = nn.Linear(config.mapping.w_dim, config.n_style_tokens * C)
        # normalise the tokens before the key/value projection, as a pre-LN block does its input:
        # without it the style path is a product of three N(0, 0.02) maps and w barely reaches
        # the output at initialisation
        self.ln_tokens = nn.LayerNorm(C, bias=config.bias)
        self.c_q = nn.Linear(C, C, bias=config.bias)
        self.c_kv = nn.Linear(C, 2 * C, bias=config.bias)
        self.c_proj = nn.Linear(C, C, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.ln = nn.LayerNorm(C, bias=config.bias)

    def context(self, w):
        """w (B, w_dim) -> keys and values of the style tokens, each (B, nh, S, hs); once per sequence."""
        B = w.size(0)
        C = self.c_q.in_features
        tokens = self.ln_tokens(self.to_tokens(w).view(B, self.n_tokens, C))  # (B, S, C)
        k, v = self.c_kv(tokens).split(C, dim=2)
        k = k.view(B, self.n_tokens, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, S, hs)
        v = v.view(B, self.n_tokens, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, S, hs)
        return k, v

    def branch(self, x, context):
        """What the style adds to the residual stream at every position (B, T, C)."""
        B, T, C = x.shape
        k, v = context
        q = self.c_q(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # no mask: the style tokens are not in time, every position may read all of them
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def forward(self, x, context):
        return self.ln(x + self.branch(x, context))  # post-LN (NoiseBlock)

    def pre_ln(self, x, context):
        return x + self.branch(self.ln(x), context)  # pre-LN (GPT2StyleBlock): ln normalises the branch's input

    def zero_(self):
        """The branch adds nothing (its output projection at zero): GPT2StyleBlock's initialisation."""
        nn.init.zeros_(self.c_proj.weight)
        if self.c_proj.bias is not None:
            nn.init.zeros_(self.c_proj.bias)


class AdaLNStyle(nn.Module):
    """Adaptive LayerNorm: LayerNorm(x) * (1 + gain(w)) + bias(w), StyleGAN's AdaIN over channels."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.n_embd, elementwise_affine=False)
        self.affine = nn.Linear(config.mapping.w_dim, 2 * config.n_embd)

    def context(self, w):
        """w (B, w_dim) -> (gain, bias), each (B, 1, C); once per sequence."""
        gain, bias = self.affine(w).unsqueeze(1).chunk(2, dim=-1)
        return 1.0 + gain, bias  # 1 + .: the identity modulation at w's mean, as StyleGAN2's bias_init=1

    @staticmethod
    def modulate(h, context):
        gain, bias = context
        return h * gain + bias

    def forward(self, x, context):
        return self.modulate(self.norm(x), context)

    def zero_(self):
        """The identity modulation for every w (gain 1, bias 0): GPT2StyleBlock's initialisation."""
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)


# literal registry of style layers: GeneratorConfig.style_mode -> class
STYLE_LAYERS = {
    "cross_attn": CrossAttentionStyle,
    "adaln": AdaLNStyle,
}


class NoiseBlock(nn.Module):
    """Causal self-attention, noise injection, style, feed-forward; post-LayerNorm (see the module docstring)."""

    def __init__(self, config: GeneratorConfig, layer: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer)
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.noise = NoiseInjection(config.n_embd)
        self.style = STYLE_LAYERS[config.style_mode](config)
        self.mlp = FeedForward(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)

    def forward(self, x, style_context, noise, cache=None):
        x = self.ln_1(x + self.attn(x, cache))  # post-LN: noise and style act on the normalised stream
        x = self.noise(x, noise)
        x = self.style(x, style_context)
        x = self.ln_2(x + self.mlp(x))
        return x


class GPT2StyleBlock(nn.Module):
    """GPT-2's pre-LN block (baselines.gpt2.Block, its parameter names) with the noise and the style
    as residual branches that start at zero (see the module docstring): at initialisation it
    computes what the GPT-2 block computes, whatever w and the noise."""

    def __init__(self, config: GeneratorConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.noise = NoiseInjection(config.n_embd)
        self.style = STYLE_LAYERS[config.style_mode](config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FeedForward(config)
        self.adaln = config.style_mode == "adaln"

    def forward(self, x, style_context, noise, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        x = self.noise(x, noise)
        if self.adaln:  # the style modulates the feed-forward's normalised input
            return x + self.mlp(self.style.modulate(self.ln_2(x), style_context))
        x = self.style.pre_ln(x, style_context)
        return x + self.mlp(self.ln_2(x))


class GeneratorCache(KVCache):
    """Self-attention keys and values of every layer, plus the per-sequence style: w (B, L, w_dim)
    and each NoiseBlock's style context (cross-attention keys and values, or AdaLN gain and bias)."""

    def __init__(self, n_layer: int, w, style):
        super().__init__(n_layer)
        self.w = w
        self.style = style


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("GeneratorConfig.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        self.n_styles = config.n_layer
        self.noise_channels = config.noise_dim + config.n_layer
        masked_buffer(self, token_ids(config.never_predict))
        styled = GPT2StyleBlock if config.gpt2_blocks else NoiseBlock
        self.mapping = MappingNetwork(config.mapping)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            noise_proj=nn.Linear(config.noise_dim, config.n_embd, bias=False),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([styled(config, i) for i in range(config.n_layer)]),
            # GPT-2 blocks, numbered after the NoiseBlocks in the shared KV cache
            h_out=nn.ModuleList([Block(config, config.n_layer + i) for i in range(config.n_out_layers)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        # GPT-2's initialisation for nn.Linear and nn.Embedding; the mapping's EqualLinear
        # layers and the zero noise scales are other classes and keep their own
        self.apply(init_weights)
        # the input noise starts switched off, like the zero-initialised NoiseInjection scales:
        # the generator begins as an LM conditioned on z and learns how much per-step noise to
        # use (the gradient w.r.t. this weight, noise x upstream, is not zero)
        nn.init.zeros_(self.transformer.noise_proj.weight)
        # GPT-2's residual-projection scaling, counted over every branch that ends in a
        # c_proj: self-attention and feed-forward in each block, cross-attention in each NoiseBlock
        n_residual = 2 * (config.n_layer + config.n_out_layers) + config.n_layer * (config.style_mode == "cross_attn")
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(n_residual))
        if config.gpt2_blocks:  # the style branches start at zero, as the noise scales do
            for block in self.transformer.h:
                block.style.zero_()

    # ----- from and to a GPT-2 -----

    @classmethod
    def from_lm(cls, lm: GPT, config: GeneratorConfig | None = None, block_size: int = 0) -> Generator:
        """A gpt2_blocks generator that starts as `lm` (a baselines.gpt2.GPT): its sizes (n_layer, n_head,
        n_embd, bias; no plain blocks after the styled ones), its weights, its <bos> reading and its
        never-predicted ids; the mapping, noise, style and dropout settings of `config`. block_size:
        the longest sentence (the first rows of the LM's position table; 0 = all of them)."""
        c = lm.config
        T = block_size or c.block_size
        if T > c.block_size:
            raise ValueError(f"the LM has {c.block_size} positions; sentences of {T} tokens need more")
        config = dataclasses.replace(config or GeneratorConfig(), vocab_size=c.vocab_size, block_size=T,
                                     n_layer=c.n_layer, n_out_layers=0, n_head=c.n_head, n_embd=c.n_embd, bias=c.bias,
                                     gpt2_blocks=True, bos_as_eos=c.bos_as_eos, never_predict=c.never_predict)
        gen = cls(config).to(lm.lm_head.weight.device)
        state = lm.state_dict()
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:T]
        missing, unexpected = gen.load_state_dict(state, strict=False)
        new_parts = ("mapping.", "transformer.noise_proj.", ".noise.", ".style.")  # what the LM does not have
        foreign = [k for k in missing if not any(part in k for part in new_parts)]
        if unexpected or foreign:
            raise ValueError(f"the LM's weights do not map onto the generator (unexpected {unexpected[:4]}, "
                             f"missing {foreign[:4]})")
        return gen

    def to_lm(self, w=None) -> GPT:
        """The GPT-2 this generator is at one style and zero noise: w (w_dim,), default the mapping's
        w_avg (truncation psi = 0). Each block's modulation folds into its ln_2 (gain into the weight,
        gain and bias into the bias) and the noise branches, at zero, drop out: exact (tests). Needs
        gpt2_blocks with style_mode adaln and LayerNorm biases: a cross-attention style depends on each
        position's query, which no GPT-2 weight can hold."""
        c = self.config
        if not c.gpt2_blocks or c.style_mode != "adaln" or c.n_out_layers or not c.bias:
            raise ValueError("only a generator of GPT-2 blocks with style_mode adaln (and biases, no plain blocks "
                             f"after the styled ones) is a GPT-2 at a fixed style; this one has gpt2_blocks "
                             f"{c.gpt2_blocks}, style_mode {c.style_mode!r}, n_out_layers {c.n_out_layers} (train it "
                             "with train_gan --init_lm and --generator.style_mode adaln to export it)")
        lm = GPT(GPTConfig(vocab_size=c.vocab_size, block_size=c.block_size, n_layer=c.n_layer, n_head=c.n_head,
                           n_embd=c.n_embd, dropout=c.dropout, bias=c.bias, bos_as_eos=c.bos_as_eos,
                           never_predict=c.never_predict)).to(self.lm_head.weight.device)
        keep = lm.state_dict().keys()
        state = {k: v for k, v in self.state_dict().items() if k in keep}  # load_state_dict copies them
        w = self.mapping.w_avg if w is None else w
        with torch.no_grad():
            for i, block in enumerate(self.transformer.h):
                gain, bias = (t.reshape(-1) for t in block.style.context(w.reshape(1, -1)))  # (C,) each
                ln = f"transformer.h.{i}.ln_2."
                state[ln + "bias"] = state[ln + "bias"] * gain + bias
                state[ln + "weight"] = state[ln + "weight"] * gain
        lm.load_state_dict(state)
        return lm

    # ----- latents and noise -----

    def make_noise(self, batch_size: int, T: int, generator: torch.Generator | None = None):
        """Fresh noise (B, T, N) for T steps: input noise then one injection channel per NoiseBlock."""
        w = self.lm_head.weight
        return torch.randn(batch_size, T, self.noise_channels, generator=generator, device=w.device, dtype=w.dtype)

    def latent(self, batch_size: int, z=None, w=None, psi: float = 1.0, generator=None):
        """Per-layer styles (B, L, w_dim) from z (B, z_dim), or w (B, w_dim) / (B, L, w_dim), or a
        fresh z ~ N(0, I) when both are None; truncated towards mapping.w_avg when psi != 1."""
        if z is not None and w is not None:
            raise ValueError("pass z or w, not both")
        if w is None:
            if z is None:
                z = torch.randn(batch_size, self.config.mapping.z_dim, generator=generator,
                                device=self.lm_head.weight.device, dtype=self.lm_head.weight.dtype)
            w = self.mapping(z)  # (B, w_dim)
        w = self.mapping.truncate(w, psi)
        if w.dim() == 2:
            w = w[:, None, :].expand(-1, self.n_styles, -1)  # (B, L, w_dim): the same style everywhere
        if w.dim() != 3 or w.size(1) != self.n_styles or w.size(2) != self.config.mapping.w_dim:
            raise ValueError(f"w must be (B, w_dim) or (B, {self.n_styles}, {self.config.mapping.w_dim}), "
                             f"got {tuple(w.shape)}")
        if w.size(0) != batch_size:
            raise ValueError(f"the latent has batch {w.size(0)}, the tokens {batch_size}")
        return w

    def style_context(self, w):
        """w (B, L, w_dim) -> one style context per NoiseBlock (what the cache keeps per sequence)."""
        return [block.style.context(w[:, i]) for i, block in enumerate(self.transformer.h)]

    def init_cache(self, batch_size: int, z=None, w=None, psi: float = 1.0, generator=None) -> GeneratorCache:
        """A cache for incremental decoding; it fixes the sequence's latent (random when z, w are None)."""
        w = self.latent(batch_size, z, w, psi, generator)
        return GeneratorCache(self.config.n_layer + self.config.n_out_layers, w, self.style_context(w))

    # ----- teacher forcing -----

    def forward(self, idx, targets=None, z=None, w=None, noise=None, psi: float = 1.0,
                cache: GeneratorCache | None = None):
        """idx (B, T) token ids -> logits (B, T, V), and the mean loss over targets != IGNORE_INDEX.

        z (B, z_dim) or w (B, w_dim) / (B, L, w_dim): the latent, random when both are None.
        noise (B, T, N): random when None. With a cache, idx holds only the new tokens, noise
        covers only them, and the latent is the cache's (z and w must be None).
        """
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"sequence of length {start + T} exceeds block_size {self.block_size}")
        if cache is not None:
            if z is not None or w is not None:
                raise ValueError("with a cache the latent is fixed by init_cache(z=..., w=...); pass z, w there")
            style = cache.style
        else:
            style = self.style_context(self.latent(B, z, w, psi))
        if noise is None:
            noise = self.make_noise(B, T)
        elif noise.shape != (B, T, self.noise_channels):
            raise ValueError(f"noise must be (B, T, N) = {(B, T, self.noise_channels)}, got {tuple(noise.shape)}")
        nd = self.config.noise_dim
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        tr = self.transformer
        x = tr.wte(read_ids(idx, self.config.bos_as_eos)) + tr.wpe(pos) + tr.noise_proj(noise[..., :nd])  # (B, T, C)
        x = tr.drop(x)
        for i, block in enumerate(tr.h):
            x = block(x, style[i], noise[..., nd + i: nd + i + 1], cache)  # injection noise (B, T, 1)
        for block in tr.h_out:
            x = block(x, cache)
        if cache is not None:
            cache.pos += T
        logits = mask_logits(self.lm_head(tr.ln_f(x)), self.masked)  # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss

    # ----- free running -----

    def sample(self, batch_size: int, max_len: int, z=None, w=None, noise=None, psi: float = 1.0,
               temperature: float = 1.0, generator: torch.Generator | None = None, relax=None,
               banned=None, trim: bool = False) -> dict:
        """Generate from <bos> for max_len steps with the KV cache -> dict of
          ids   (B, max_len) long: the sentence without <bos>; <eos>, then <pad> after it
          mask  (B, max_len) bool: valid positions, up to and including <eos>
          w     (B, L, w_dim): the styles used (for mapping.update_w_avg)
          soft  (B, max_len, V), only with relax: the distributions D reads, with gradient;
                one-hot <pad> where mask is False (the layout of relax.real_inputs)

        relax: None for plain multinomial sampling (run under no_grad), or a function
        relax(logits (B, V), generator=...) -> (soft (B, V), hard (B,)) from gan/relax.py
        (e.g. functools.partial(gumbel_softmax, beta=beta)); the graph through the logits
        and the cached keys and values is kept, only the fed-back token is hard. The
        logits are divided by temperature first. z, w, psi: as in forward. noise
        (B, >= max_len, N): drawn when None. A fixed generator (with fixed z and noise or
        not) gives identical samples; draws are z, then noise, then one per step.
        The module's train/eval mode is left as it is (dropout applies in train mode).
        banned: token ids whose logits are set to -inf after the temperature, so they are never
        drawn (nor given mass in soft); None: none, and the draws are the same either way. A
        fixed-length corpus (Corpus.fixed_length = n) bans the special tokens
        (datasets.tokenizers.SPECIAL_IDS) with max_len = n: <eos> never comes, every row is n
        tokens and mask is all True, the layout of its real batches.
        A finished row leaves the batch (the model runs only on the rows still generating), and
        generation stops once every row has ended; trim=True also cuts ids, mask and soft to
        that width (the longest row, its <eos> included) instead of padding them to max_len.
        """
        if not 1 <= max_len <= self.block_size:
            raise ValueError(f"max_len must be in [1, block_size={self.block_size}], got {max_len}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        B = batch_size
        device = self.lm_head.weight.device
        grad_context = torch.no_grad() if relax is None else contextlib.nullcontext()
        with grad_context:
            cache = self.init_cache(B, z=z, w=w, psi=psi, generator=generator)
            if noise is None:
                noise = self.make_noise(B, max_len, generator=generator)
            elif (noise.dim() != 3 or noise.size(0) != B or noise.size(1) < max_len
                  or noise.size(2) != self.noise_channels):
                raise ValueError(f"noise must be (B, >= max_len, N) = ({B}, >= {max_len}, {self.noise_channels}), "
                                 f"got {tuple(noise.shape)}")
            ids = torch.full((B, max_len), PAD_ID, dtype=torch.long, device=device)
            mask = torch.zeros(B, max_len, dtype=torch.bool, device=device)
            active = torch.arange(B, device=device)  # rows still generating: a finished row leaves the batch
            w = cache.w  # every row's styles (keep_rows below cuts the cache to the active rows)
            banned = torch.as_tensor(list(banned), dtype=torch.long, device=device) if banned else None
            soft_steps = []
            tok = torch.full((B, 1), BOS_ID, dtype=torch.long, device=device)
            for t in range(max_len):
                logits, _ = self(tok, noise=noise[active, t:t + 1], cache=cache)
                logits = logits[:, -1, :]  # (active, V)
                scaled = logits / temperature
                if banned is not None:
                    scaled = scaled.index_fill(-1, banned, float("-inf"))
                if relax is None:
                    nxt = torch.multinomial(F.softmax(scaled.float(), dim=-1), 1, generator=generator).squeeze(1)
                else:
                    soft, nxt = relax(scaled, generator=generator)  # (active, V), (active,)
                    pad_rows = F.one_hot(torch.full((B,), PAD_ID, device=device), soft.size(-1)).to(soft.dtype)
                    soft_steps.append(pad_rows.index_put((active,), soft))  # finished rows read one-hot <pad>
                nxt = nxt.detach().long()
                mask[active, t] = True
                ids[active, t] = nxt
                going = nxt != EOS_ID
                if not bool(going.any()):
                    break
                if not bool(going.all()):
                    keep = going.nonzero().squeeze(1)
                    active, nxt = active[keep], nxt[keep]
                    keep_rows(cache, keep)
                tok = nxt[:, None]  # the hard token, fed back without gradient
            width = t + 1 if trim else max_len
            out = {"ids": ids[:, :width], "mask": mask[:, :width], "w": w}
            if relax is not None:
                out["soft"] = pad_soft(torch.stack(soft_steps, dim=1), width)  # (B, t + 1, V) -> (B, width, V)
        return out
