"""What the discriminator sees of a fake sentence: relaxations of discrete sampling.

A sampled token is discrete, so no gradient reaches the generator through it. A GAN for
text instead hands the discriminator a distribution over the vocabulary at every step,
computed from the logits with gradient, while the generator feeds the hard token back.

Every relaxation here has the same signature, so the generator's `sample(relax=...)` can
take any of them (with `functools.partial` for beta):

    relax(logits (B, V), beta=..., generator=None) -> (soft (B, V), hard (B,) long)

`hard` is the token sampled at this step (fed back to the generator, without gradient);
`soft` is what the discriminator sees, differentiable w.r.t. the logits.

The sparsity problem. Real sentences reach the discriminator as one-hot rows; a plain
softmax of the generator's logits is dense (every entry > 0). A discriminator can then
separate real from fake by sparsity alone (the largest entry, the entropy of a row), with
no regard to the text, and its gradient teaches the generator to sharpen its softmax,
not to write better sentences. The remedies:
- `gumbel_softmax` (RelGAN, Nie et al. 2019, following Jang et al. 2017 and Maddison et
  al. 2017): softmax(beta * (logits + g)) with Gumbel noise g. Its argmax is an exact
  sample of softmax(logits), and as beta grows the rows approach one-hot, so annealing
  beta up (`beta_schedule`) closes the sparsity gap while keeping a gradient.
- `straight_through`: the forward value is exactly the one-hot sample, the backward pass
  that of the Gumbel-softmax (Bengio et al. 2013; Jang et al. 2017): nothing to tell
  apart by sparsity, at the price of a biased gradient.
- `softmax_relax`: the plain softmax, kept as the baseline that has the sparsity problem.

Real inputs go through `real_inputs`, which turns the dataset's target rows into the same
(one-hot (B, T, V), mask (B, T)) pair that `Generator.sample` returns for fakes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from datasets.tokenizers import IGNORE_INDEX, PAD_ID


def gumbel_noise(shape, generator=None, device=None, dtype=torch.float32):
    """Standard Gumbel samples, -log(e) with e ~ Exp(1) (the same law as -log(-log(u)),
    u ~ U(0, 1)), as torch.nn.functional.gumbel_softmax draws them: three in-place passes
    over the (B, V) logits instead of six, which matters on a CPU with a large vocabulary.
    e is kept off 0, so the noise is finite."""
    e = torch.empty(shape, device=device, dtype=dtype).exponential_(generator=generator)
    return e.clamp_min_(torch.finfo(dtype).tiny).log_().neg_()


def gumbel_softmax(logits, beta: float = 1.0, generator=None):
    """RelGAN's relaxation: soft = softmax(beta * (logits + g)), hard = argmax(logits + g).

    beta is an inverse temperature: beta -> inf makes soft the one-hot of hard.
    """
    g = gumbel_noise(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    perturbed = logits + g  # (B, V)
    hard = perturbed.argmax(dim=-1)  # (B,) a sample of softmax(logits) (the Gumbel-max trick)
    return F.softmax(beta * perturbed, dim=-1), hard


def straight_through(logits, beta: float = 1.0, generator=None):
    """Straight-through Gumbel: one-hot of the Gumbel-max sample forward, the gradient of
    softmax(beta * (logits + g)) backward."""
    soft, hard = gumbel_softmax(logits, beta=beta, generator=generator)
    one_hot = F.one_hot(hard, logits.size(-1)).to(soft.dtype)
    return one_hot + soft - soft.detach(), hard


def softmax_relax(logits, beta: float = 1.0, generator=None):
    """The plain softmax relaxation: soft = softmax(beta * logits), hard ~ multinomial(softmax(logits)).

    beta = 1 is the plain softmax. Dense rows: see the sparsity problem above.
    """
    hard = torch.multinomial(F.softmax(logits.detach(), dim=-1), 1, generator=generator).squeeze(1)
    return F.softmax(beta * logits, dim=-1), hard


RELAXATIONS = {
    "gumbel": gumbel_softmax,
    "straight_through": straight_through,
    "softmax": softmax_relax,
}


def beta_schedule(step: int, total: int, beta_max: float, kind: str = "exp") -> float:
    """RelGAN's inverse-temperature schedules, from 1 at step 0 to beta_max at step `total`.

    constant: beta_max; linear: 1 + (beta_max - 1) * step / total; exp: beta_max ** (step / total).
    Steps past `total` keep beta_max.
    """
    if total <= 0:
        raise ValueError(f"beta_schedule: total must be positive, got {total}")
    if beta_max < 1.0:
        raise ValueError(f"beta_schedule: beta_max must be >= 1, got {beta_max}")
    frac = min(max(step, 0), total) / total
    if kind == "constant":
        return float(beta_max)
    if kind == "linear":
        return 1.0 + (beta_max - 1.0) * frac
    if kind == "exp":
        return float(math.pow(beta_max, frac))
    raise ValueError(f"beta_schedule: unknown kind {kind!r}; expected 'constant', 'linear' or 'exp'")


def real_inputs(targets, vocab_size: int, dtype=torch.float32):
    """Dataset target rows (B, T) -> (one-hot (B, T, V), mask (B, T) bool).

    IGNORE_INDEX positions become one-hot <pad> with mask False, the same layout as a fake
    from `Generator.sample` (valid up to and including <eos>, one-hot <pad> after).
    """
    mask = targets != IGNORE_INDEX
    tokens = targets.masked_fill(~mask, PAD_ID)
    return F.one_hot(tokens, vocab_size).to(dtype), mask


def pad_soft(soft, T: int):
    """Inputs (B, t, V) -> (B, max(t, T), V): one-hot <pad> rows after position t (what a finished
    row reads)."""
    n = T - soft.size(1)
    if n <= 0:
        return soft
    pad_rows = F.one_hot(torch.full((soft.size(0), n), PAD_ID, device=soft.device), soft.size(-1)).to(soft.dtype)
    return torch.cat([soft, pad_rows], dim=1)


def pad_inputs(soft, mask, T: int):
    """Inputs (B, t, V) and mask (B, t) -> (B, T, V), (B, T): pad_soft, with mask False after
    position t (a real batch and a fake of other widths, brought to one for an interpolation
    such as WGAN-GP's)."""
    n = T - soft.size(1)
    if n <= 0:
        return soft, mask
    return pad_soft(soft, T), F.pad(mask, (0, n), value=False)
