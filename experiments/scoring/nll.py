"""Negative log-likelihood of a language model on a split, per real token.

Padding never counts: targets at padding are IGNORE_INDEX and are neither summed nor
counted, so the figure is nats per token (per character on names and Shakespeare),
<eos> included as in makemore. The pass is complete and in a fixed order, so the
same checkpoint always gives the same number.

Two other figures, each clearly named:

- `nll_with_pad` (from `lm_nll(..., pad_len=L)`): the figure the text-GAN code bases
  print (Texygen, TextGAN-PyTorch, RelGAN). They pad every sequence to a fixed max_len
  and average the cross-entropy over all max_len positions, pad targets included; their
  models are trained on those pads and predict them almost perfectly, so the average
  is diluted by near-zero terms. Our models stop at <eos>, so we count every position
  after it as a pad predicted with probability 1 (what such a model approaches): the
  figure is (sum of -log p over real tokens) / (sequences x L). It is NOT per token and
  shrinks as L grows; report it only beside papers that print it.
- `latent_nll`: for a generator with a latent (the GAN), p(x) = E_u p(x | u) has no
  closed form. We estimate -log p(x) by -log (1/K) sum_k p(x | u_k), u_k drawn from the
  prior, a log-mean-exp over K draws. By Jensen's inequality E[log mean_k p(x | u_k)] <=
  log E[p(x | u)] = log p(x), so the estimate is an UPPER bound on the NLL in
  expectation, which tightens as K grows (the importance-weighted bound of Burda et al.
  2016, "Importance Weighted Autoencoders", with the prior as proposal).
- `posterior_nll`: the same with an encoder q(z | x) as proposal (importance sampling, the
  IWAE bound itself): -log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x), z_k ~ q(z | x).
  Also an upper bound in expectation for any q; K = 1 is the negative ELBO. Which of the
  two bounds is tighter depends on q: with the free bits of VAE pretraining
  (gan/encoder.py) q sits several nats from the prior and this bound was the looser one
  at K = 1 (research/gan).
- `latent_usage`: how much such a generator's predictions depend on its latent z, the
  mutual information between z and the next token given a real prefix (nats per token).
- `vae_objective`: not an NLL but the VAE pretraining objective on a split,
  (reconstruction NLL + free-bits KL) per token with z ~ q(z | x) (what the trainer's
  best-on-val selects on in posterior pretraining).

Structure: one pass over the batches (`_pass`: eval mode and its restoration, moving
each batch to the device, the pad_len check, summing a per-batch total of -log p as a
Python float of its `.item()`, counting the real target tokens and the rows); each
figure is a per-batch function handed to it (`_lm_batch`, `_latent_batch`,
`_posterior_batch`, `_vae_batch`) and `_summary` turns the totals into the dict. The
two latent estimators share the log-mean-exp over K draws (`_log_mean_exp_nll`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from datasets.tokenizers import IGNORE_INDEX
from gan.losses import free_bits_kl, gaussian_kl


# ---- the one loop

class _Totals(NamedTuple):
    total: float  # sum over the batches of each batch's total (.item(), Python float accumulation)
    count: int    # real target tokens (targets != IGNORE_INDEX)
    rows: int     # sequences


@contextlib.contextmanager
def _eval_mode(*modules):
    """The modules in eval mode for the block; each gets its own previous mode back afterwards."""
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, training in zip(modules, was_training):
            m.train(training)


def _check_pad_len(pad_len, y):
    if pad_len is not None and y.size(1) > pad_len:
        raise ValueError(f"pad_len={pad_len} but a batch has {y.size(1)} target positions; "
                         "pass the padded length the papers use (at least the data's block_size)")


def _check(K: int | None = None, temperature: float = 1.0):
    if K is not None and K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _pass(batches, device, modules, batch_total: Callable, pad_len: int | None = None) -> _Totals:
    """One complete pass over (x, y) batches with `modules` in eval mode: batch_total(x, y)
    (on the device) -> a 0-dim tensor, the batch's sum of -log p over its real targets; summed
    as Python floats of its .item(), in batch order. Callers hold torch.no_grad()."""
    total, count, rows = 0.0, 0, 0
    with _eval_mode(*modules):
        for x, y in batches:
            _check_pad_len(pad_len, y)
            x, y = x.to(device), y.to(device)
            total += batch_total(x, y).item()
            count += int((y != IGNORE_INDEX).sum())
            rows += y.size(0)
    return _Totals(total, count, rows)


def bits_per_byte(nll_sum: float, texts) -> float:
    """One scale across vocabularies: a summed NLL (nats) over texts, in bits, divided by the texts'
    UTF-8 bytes plus one per text for its end (the <eos> every model predicts). The texts are the
    cleaned ones the model was scored on (lowercased where the data is: LMData.byte_texts); the
    same texts for every model of a comparison, so the figure compares char, word and BPE models.
    A word model reads an unseen word as one <unk>, never spelling it, so its figure is a lower
    bound wherever the text has unknown words (reports say so beside its unknown-word rate)."""
    n_bytes = sum(len(t.encode("utf-8")) + 1 for t in texts)
    return nll_sum / math.log(2) / max(n_bytes, 1)


def _summary(total: float, count: int, rows: int, pad_len: int | None) -> dict:
    mean = total / max(count, 1)
    out = {"nll": mean, "bits": mean / math.log(2), "ppl": math.exp(mean), "tokens": count, "sequences": rows}
    if pad_len is not None:
        out["nll_with_pad"] = total / max(rows * pad_len, 1)
    return out


# ---- per-batch totals

def _token_nll(logits, y, temperature: float):
    """-log p of every target (B, T) under logits / temperature (float32); 0 at padding."""
    return F.cross_entropy(logits.float().transpose(1, 2) / temperature, y, ignore_index=IGNORE_INDEX,
                           reduction="none")


def _log_mean_exp_nll(K: int, log_weight: Callable):
    """-sum over rows of log (1/K) sum_k exp(log_weight()), one call of log_weight() -> (B,) per k."""
    log_px = torch.logsumexp(torch.stack([log_weight() for _ in range(K)]), dim=0) - math.log(K)  # (B,)
    return -log_px.sum()


def _lm_batch(x, y, model, temperature, autocast_ctx):
    if autocast_ctx is not None:
        with autocast_ctx():
            logits, _ = model(x)
    else:
        logits, _ = model(x)
    logits = logits.float() / temperature
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def _latent_batch(x, y, model, K, draw_latent, g, temperature, extra):
    B, T = y.shape

    def log_px_given_u():  # (B,) log p(x | u_k), u_k from the prior; pad targets contribute 0
        logits, _ = model(x, **draw_latent(model, B, T, g), **extra)
        return -_token_nll(logits, y, temperature).sum(dim=1)

    return _log_mean_exp_nll(K, log_px_given_u)


def _posterior_batch(x, y, model, encoder, K, g, temperature):
    B, T = y.shape
    mean, logvar = encoder.posterior(y)
    mean, logvar = mean.float(), logvar.float()

    def log_weight():  # (B,) log p(x | z_k) + log p(z_k) - log q(z_k | x), z_k ~ q(z | x)
        z = encoder.sample(mean, logvar, generator=g)  # (B, z_dim)
        logits, _ = model(x, z=z, noise=model.make_noise(B, T, generator=g))
        log_prior = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        return -_token_nll(logits, y, temperature).sum(dim=1) + log_prior - _log_normal(z, mean, logvar)

    return _log_mean_exp_nll(K, log_weight)


def _vae_batch(x, y, generator, encoder, g, kls: list):
    """Reconstruction NLL summed over the batch with one z ~ q(z | x) per sentence; the batch's
    KL(q || prior) (B, z_dim) is appended to kls."""
    mean, logvar = encoder.posterior(y)
    logits, _ = generator(x, z=encoder.sample(mean, logvar, generator=g),
                          noise=generator.make_noise(*y.shape, generator=g))
    kls.append(gaussian_kl(mean, logvar))
    return F.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=IGNORE_INDEX, reduction="sum")


def _log_normal(z, mean, logvar):
    """log N(z; mean, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (((z - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


# ---- the figures

@torch.no_grad()
def lm_nll(model, batches, device, autocast_ctx=None, temperature: float = 1.0,
           pad_len: int | None = None) -> dict:
    """Sum of -log p over every target token / number of target tokens (nats),
    with bits per token and perplexity derived from it.

    temperature: score the model whose logits are divided by it (the distribution that
    sampling at that temperature draws from; the NLL-test axis of a temperature sweep).
    pad_len: sequence mode only; also return `nll_with_pad`, the padding-included
    text-GAN figure over pad_len positions per sequence (see the module docstring).
    """
    _check(temperature=temperature)
    batch = functools.partial(_lm_batch, model=model, temperature=temperature, autocast_ctx=autocast_ctx)
    return _summary(*_pass(batches, device, (model,), batch, pad_len), pad_len)


def gan_latent(model, batch_size: int, T: int, generator: torch.Generator | None = None) -> dict:
    """Everything gan.Generator draws at random for a teacher-forced pass: z ~ N(0, I)
    and the per-step noise (B, T, N). Both are the latent u of p(x) = E_u p(x | u)."""
    dev = model.lm_head.weight.device
    z = torch.randn(batch_size, model.config.mapping.z_dim, generator=generator, device=dev)
    return {"z": z, "noise": model.make_noise(batch_size, T, generator=generator)}


@torch.no_grad()
def latent_nll(model, batches, K: int, device, draw_latent=gan_latent, seed: int = 0,
               temperature: float = 1.0, psi: float = 1.0, pad_len: int | None = None) -> dict:
    """NLL per token of a latent-variable generator, estimated by log-mean-exp over K latents.

    For each sequence x: log p^(x) = logsumexp_k log p(x | u_k) - log K, u_1..u_K drawn
    independently from the prior by draw_latent(model, B, T, generator) -> the keyword
    arguments of model.forward (default: z and noise for gan.Generator). Then
    nll = -sum_x log p^(x) / (real target tokens), padding excluded as in lm_nll.

    An upper bound on the true NLL in expectation (Jensen), exact as K -> infinity; with
    a model that ignores its latent it equals lm_nll for every K. Deterministic given seed.
    psi != 1 is passed on to forward (the truncated generator's likelihood).
    """
    _check(K, temperature)
    g = torch.Generator(device=device).manual_seed(seed)
    extra = {"psi": psi} if psi != 1.0 else {}
    batch = functools.partial(_latent_batch, model=model, K=K, draw_latent=draw_latent, g=g,
                              temperature=temperature, extra=extra)
    out = _summary(*_pass(batches, device, (model,), batch, pad_len), pad_len)
    out["K"] = K
    return out


@torch.no_grad()
def posterior_nll(model, encoder, batches, K: int, device, seed: int = 0, temperature: float = 1.0,
                  pad_len: int | None = None) -> dict:
    """NLL per token of a latent-variable generator, by importance sampling with the encoder's
    q(z | x) as proposal: log p^(x) = logsumexp_k [log p(x | z_k) + log p(z_k) - log q(z_k | x)]
    - log K, z_k ~ q(z | x); the step noise is drawn from its prior (proposal = prior, so its
    weights cancel). nll = -sum_x log p^(x) / (real target tokens), padding excluded as in
    lm_nll. An upper bound on the true NLL in expectation for any q (Burda et al. 2016);
    K = 1 gives the negative ELBO. Deterministic given seed."""
    _check(K, temperature)
    g = torch.Generator(device=device).manual_seed(seed)
    batch = functools.partial(_posterior_batch, model=model, encoder=encoder, K=K, g=g, temperature=temperature)
    out = _summary(*_pass(batches, device, (model, encoder), batch, pad_len), pad_len)
    out["K"] = K
    return out


@torch.no_grad()
def vae_objective(generator, encoder, batches, free_bits: float, device, seed: int = 0) -> float:
    """The VAE pretraining objective on a split, per real target token:
    (sum of -log p(x | z) over its tokens, z ~ q(z | x) one per sentence, + sentences x the
    free-bits KL of gan.losses.free_bits_kl over all its posteriors) / tokens. z and the
    step noise are drawn from torch.Generator(device).manual_seed(seed), z then noise per
    batch. Posterior pretraining selects on it: the NLL bounds charge the KL under the free
    bits in full, so they would prefer an early generator that ignores z."""
    g = torch.Generator(device=device).manual_seed(seed)
    kls = []
    batch = functools.partial(_vae_batch, generator=generator, encoder=encoder, g=g, kls=kls)
    rec, tokens, rows = _pass(batches, device, (generator, encoder), batch)
    kl = torch.cat(kls)  # (sentences, z_dim)
    return (rec + rows * free_bits_kl(kl, free_bits).item()) / tokens


@torch.no_grad()
def latent_usage(model, x, y, n_z: int = 16, seed: int = 0) -> float:
    """How much a latent-variable generator's next-token distributions depend on z, in nats
    per token: mean over the real prefixes (x, y) (B, T) of
        E_z KL( p(. | x_<t, z, n) || E_z' p(. | x_<t, z', n) ),
    with n_z draws of z and one fixed draw n of the step noise per sentence. This is the
    mutual information I(z; x_t | x_<t) between z and the next token given a real prefix
    (under the empirical distribution of the n_z draws). 0 for a generator that ignores z
    (p(x | z) = p(x), where MLE pretraining with random z leads), at most ln V.
    Deterministic given seed."""
    if n_z < 2:
        raise ValueError(f"n_z must be >= 2, got {n_z}")
    dev = model.lm_head.weight.device
    g = torch.Generator(device=dev).manual_seed(seed)
    x, y = x.to(dev), y.to(dev)
    B, T = x.shape
    with _eval_mode(model):
        z = torch.randn(n_z, model.config.mapping.z_dim, generator=g, device=dev)  # the same n_z latents for every x
        noise = model.make_noise(B, T, generator=g)  # (B, T, N), fixed across z
        logp = torch.stack([model(x, z=z[k].expand(B, -1), noise=noise)[0].float().log_softmax(-1)
                            for k in range(n_z)])  # (n_z, B, T, V)
    log_mean = torch.logsumexp(logp, dim=0) - math.log(n_z)  # (B, T, V) log E_z p(. | x_<t, z)
    kl = (logp.exp() * (logp - log_mean)).sum(-1).mean(0)  # (B, T)
    valid = y != IGNORE_INDEX
    return (kl * valid).sum().item() / max(int(valid.sum()), 1)
