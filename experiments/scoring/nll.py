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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from datasets.tokenizers import IGNORE_INDEX


def _summary(total: float, count: int, rows: int, pad_len: int | None) -> dict:
    mean = total / max(count, 1)
    out = {"nll": mean, "bits": mean / math.log(2), "ppl": math.exp(mean), "tokens": count, "sequences": rows}
    if pad_len is not None:
        out["nll_with_pad"] = total / max(rows * pad_len, 1)
    return out


def _check_pad_len(pad_len, y):
    if pad_len is not None and y.size(1) > pad_len:
        raise ValueError(f"pad_len={pad_len} but a batch has {y.size(1)} target positions; "
                         "pass the padded length the papers use (at least the data's block_size)")


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
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    total, count, rows = 0.0, 0, 0
    for x, y in batches:
        _check_pad_len(pad_len, y)
        x, y = x.to(device), y.to(device)
        if autocast_ctx is not None:
            with autocast_ctx():
                logits, _ = model(x)
        else:
            logits, _ = model(x)
        logits = logits.float() / temperature
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                              ignore_index=IGNORE_INDEX, reduction="sum")
        total += nll.item()
        count += int((y != IGNORE_INDEX).sum())
        rows += y.size(0)
    model.train(was_training)
    return _summary(total, count, rows, pad_len)


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
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    extra = {"psi": psi} if psi != 1.0 else {}
    total, count, rows = 0.0, 0, 0
    for x, y in batches:
        _check_pad_len(pad_len, y)
        x, y = x.to(device), y.to(device)
        B, T = y.shape
        log_px_given_u = []
        for _ in range(K):
            logits, _ = model(x, **draw_latent(model, B, T, g), **extra)
            logits = logits.float() / temperature
            nll = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE_INDEX, reduction="none")  # (B, T)
            log_px_given_u.append(-nll.sum(dim=1))  # (B,) log p(x | u_k), pad targets contribute 0
        log_px = torch.logsumexp(torch.stack(log_px_given_u), dim=0) - math.log(K)  # (B,)
        total += -log_px.sum().item()
        count += int((y != IGNORE_INDEX).sum())
        rows += B
    model.train(was_training)
    out = _summary(total, count, rows, pad_len)
    out["K"] = K
    return out


def _log_normal(z, mean, logvar):
    """log N(z; mean, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (((z - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def posterior_nll(model, encoder, batches, K: int, device, seed: int = 0, temperature: float = 1.0,
                  pad_len: int | None = None) -> dict:
    """NLL per token of a latent-variable generator, by importance sampling with the encoder's
    q(z | x) as proposal: log p^(x) = logsumexp_k [log p(x | z_k) + log p(z_k) - log q(z_k | x)]
    - log K, z_k ~ q(z | x); the step noise is drawn from its prior (proposal = prior, so its
    weights cancel). nll = -sum_x log p^(x) / (real target tokens), padding excluded as in
    lm_nll. An upper bound on the true NLL in expectation for any q (Burda et al. 2016);
    K = 1 gives the negative ELBO. Deterministic given seed."""
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    was_training = (model.training, encoder.training)
    model.eval()
    encoder.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    total, count, rows = 0.0, 0, 0
    for x, y in batches:
        _check_pad_len(pad_len, y)
        x, y = x.to(device), y.to(device)
        B, T = y.shape
        mean, logvar = encoder.posterior(y)
        mean, logvar = mean.float(), logvar.float()
        log_w = []
        for _ in range(K):
            z = encoder.sample(mean, logvar, generator=g)  # (B, z_dim)
            logits, _ = model(x, z=z, noise=model.make_noise(B, T, generator=g))
            nll = F.cross_entropy(logits.float().transpose(1, 2) / temperature, y, ignore_index=IGNORE_INDEX,
                                  reduction="none")  # (B, T)
            log_prior = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
            log_w.append(-nll.sum(dim=1) + log_prior - _log_normal(z, mean, logvar))  # (B,)
        log_px = torch.logsumexp(torch.stack(log_w), dim=0) - math.log(K)  # (B,)
        total += -log_px.sum().item()
        count += int((y != IGNORE_INDEX).sum())
        rows += B
    model.train(was_training[0])
    encoder.train(was_training[1])
    out = _summary(total, count, rows, pad_len)
    out["K"] = K
    return out


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
    was_training = model.training
    model.eval()
    dev = model.lm_head.weight.device
    g = torch.Generator(device=dev).manual_seed(seed)
    x, y = x.to(dev), y.to(dev)
    B, T = x.shape
    z = torch.randn(n_z, model.config.mapping.z_dim, generator=g, device=dev)  # the same n_z latents for every x
    noise = model.make_noise(B, T, generator=g)  # (B, T, N), fixed across z
    logp = torch.stack([model(x, z=z[k].expand(B, -1), noise=noise)[0].float().log_softmax(-1)
                        for k in range(n_z)])  # (n_z, B, T, V)
    log_mean = torch.logsumexp(logp, dim=0) - math.log(n_z)  # (B, T, V) log E_z p(. | x_<t, z)
    kl = (logp.exp() * (logp - log_mean)).sum(-1).mean(0)  # (B, T)
    valid = y != IGNORE_INDEX
    model.train(was_training)
    return (kl * valid).sum().item() / max(int(valid.sum()), 1)
