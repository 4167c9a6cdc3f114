"""Discriminator-guided sampling: a discriminator spent at sampling time, for any generator.

A discriminator trained to tell real text from a generator's samples estimates the density
ratio through its logit d(x): for the Bayes-optimal one, sigmoid(d(x)) = p_data / (p_data + p_g),
so exp(d(x)) = p_data(x) / p_g(x), and p_g(x) exp(d(x)) is p_data(x). Two ways to sample from
that product using only samples of the generator and their logits:

- Discriminator rejection sampling (Azadi et al. 2019, "Discriminator Rejection Sampling",
  Algorithm 1). A candidate x ~ p_g is accepted with probability sigmoid(F(x)),
      F(x) = d(x) - d_max - log(1 - exp(d(x) - d_max - eps)) - gamma,
  d_max the largest logit seen so far (a burn-in first, then raised by any candidate above it).
  For gamma = 0, sigmoid(F) = 1 / (exp(d_max - d) + 1 - exp(-eps)) ~ exp(d - d_max): plain
  rejection sampling, the ratio bounded by exp(d_max). gamma shifts the acceptance
  logit: gamma > 0 is stricter (fewer, likelier samples), gamma -> -inf accepts everything.
  Azadi et al. set gamma per batch to a percentile of F; here gamma is the strength knob.
  Deviation: the burn-in candidates are also the first candidates to accept or reject (the
  paper draws them only to estimate d_max); they are draws of p_g like any other, and reusing
  them saves the burn-in's cost.
- Sampling-importance-resampling with the discriminator as a residual energy (Deng et al. 2020,
  "Residual Energy-Based Models for Text Generation": p(x) ~ p_g(x) exp(-E(x)), sampled by drawing
  candidates from p_g and resampling). Each output is one of m fresh candidates, drawn with
  probability softmax(alpha * d) over them (E = -alpha d). alpha = 1 targets p_g exp(d); alpha
  is the strength knob (0 = the base sampler), m trades cost for fidelity (m -> inf samples the
  target exactly).

A constant discriminator leaves both samplers equal to the base one in distribution: DRS
accepts with a probability that does not depend on x, SIR picks uniformly among i.i.d. draws.

The samplers take two functions, so they serve every generator and every discriminator:
    propose(k, generator) -> list of k candidates (texts), drawn with the torch.Generator
    score(candidates) -> (k,) float tensor of discriminator logits
and return (samples, GuidedStats): the candidates drawn per sample kept is their cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class GuidedStats:
    proposed: int = 0  # candidates drawn from the generator (and scored by the discriminator)
    kept: int = 0      # samples returned

    @property
    def cost(self) -> float:
        """Candidates per sample kept (1.0 = as cheap as the base sampler, discriminator aside)."""
        return self.proposed / max(self.kept, 1)


def drs_acceptance(logits: torch.Tensor, d_max: float, gamma: float = 0.0, eps: float = 1e-6) -> torch.Tensor:
    """Azadi et al.'s acceptance probability sigmoid(F) of each logit, given the largest logit d_max
    (a logit above d_max is judged as d_max: the caller should raise d_max first)."""
    u = torch.clamp(logits.double() - d_max - eps, max=-eps)  # <= -eps < 0, so 1 - exp(u) > 0
    f = u + eps - torch.log(-torch.expm1(u)) - gamma
    return torch.sigmoid(f).to(logits.dtype)


def sir_weights(logits: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Resampling probabilities over the last dimension (a group of candidates): softmax(alpha * d),
    i.e. exp(-E) normalised with E = -alpha d."""
    return torch.softmax(alpha * logits.double(), dim=-1).to(logits.dtype)


DRS_MAX_COST = 200.0  # candidates per sample before rejection sampling gives up


def rejection_sample(propose, score, n: int, gamma: float, generator: torch.Generator, burn_in: int = 1000,
                     batch: int = 500, max_cost: float = DRS_MAX_COST):
    """n samples by discriminator rejection sampling -> (samples, GuidedStats). d_max starts as the
    largest logit of a burn-in of `burn_in` candidates (accepted or rejected like the rest), and each
    later batch of `batch` candidates raises it before it is judged. Stops
    with a RuntimeError past max_cost n + burn_in candidates: a gamma that keeps almost nothing is
    a setting to lower, not a loop to wait for."""
    limit = int(max_cost * n) + burn_in
    stats, kept, d_max = GuidedStats(), [], -math.inf
    while len(kept) < n:
        if stats.proposed >= limit:
            raise RuntimeError(f"discriminator rejection sampling kept {len(kept)} of {n} samples from "
                               f"{stats.proposed:,} candidates (gamma {gamma}), past {max_cost:g} per sample: lower "
                               f"gamma, or raise the cap (a frontier's drs_max_cost)")
        k = burn_in if stats.proposed == 0 and burn_in else batch
        candidates = propose(k, generator)
        logits = score(candidates).detach().double().cpu()
        if torch.isnan(logits).any():
            raise ValueError("the discriminator gave NaN logits: guided sampling needs finite scores")
        stats.proposed += len(candidates)
        # Azadi et al. raise D*_M when a candidate exceeds it, then decide; here a batch at a time (the
        # burn-in is the first batch): its candidates are judged against the largest logit seen
        # with them, so none is judged against itself alone
        d_max = max(d_max, logits.max().item())
        accept = torch.rand(len(candidates), generator=generator, dtype=torch.float64) < \
            drs_acceptance(logits, d_max, gamma)
        kept += [x for x, a in zip(candidates, accept.tolist()) if a][:n - len(kept)]
    stats.kept = len(kept)
    return kept, stats


def sir_sample(propose, score, n: int, m: int, alpha: float, generator: torch.Generator):
    """n samples, each resampled from m fresh candidates with probabilities softmax(alpha * d)
    -> (samples, GuidedStats); m = 1 (or alpha = 0) is the base sampler."""
    if m < 1:
        raise ValueError(f"SIR needs at least one candidate per sample, got m = {m}")
    candidates = propose(n * m, generator)
    logits = score(candidates).detach().double().cpu().view(n, m)
    pick = torch.multinomial(sir_weights(logits, alpha), 1, generator=generator).squeeze(1)
    samples = [candidates[i * m + j] for i, j in enumerate(pick.tolist())]
    return samples, GuidedStats(proposed=len(candidates), kept=n)
