"""A check that post-hoc guidance learns the right density ratio, on a toy one can enumerate.

Texts are exactly LENGTH symbols of VOCAB (4**3 = 64 texts). The base q is a product of three
seeded per-position categoricals; the target p = q * exp(g) / Z tilts it by pairwise terms
g(x) = A[x1, x2] + B[x2, x3] (seeded normal entries), so the true log ratio log p/q = g - log Z
is known for every text. guidance.train_guide, the frontier's own post-hoc training, fits a
discriminator to q's samples against fresh draws of p; at balanced classes its logit estimates
log p/q. The check reports

- the Spearman correlation between D's logit and the true log ratio over all 64 texts;
- KL(p || base) and KL(p || SIR): SIR with m candidates and alpha = 1 (gan/guided.py, through
  guidance.GuidedSampler) should move the samples towards p. Both distributions are estimated
  from `samples` draws with the same estimator (counts + 1/2 per text, normalised), so the two
  KL figures differ only by the sampler.

    python -m experiments.bench --models bigram --bleu false --guided false --peak false --padding false \
        --judge false --bpe false          # the figures at seeds 0, 1, 2 ("Density ratio on a toy")
    tests/test_guidance.py::test_the_discriminator_learns_the_density_ratio_of_a_toy

It runs in seconds on a CPU.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import torch

from datasets.tokenizers import SPECIALS, WordTokenizer
from experiments.generators.guidance import GuideConfig, GuidedSampler, logits_of, encode_texts, train_guide

VOCAB, LENGTH = ("a", "b", "c", "d"), 3
TEXTS = [" ".join(t) for t in itertools.product(VOCAB, repeat=LENGTH)]
GUIDE = GuideConfig(n_layer=1, n_head=2, n_embd=32, dropout=0.0, samples=4000, val_samples=1000, batch_size=128,
                    lr=2e-3, warmup_steps=200, steps=5000, eval_interval=200, patience=8)


def toy_distributions(seed: int = 0, scale: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, p) over TEXTS, float64: the base and the tilted target."""
    g = torch.Generator().manual_seed(seed)
    per_position = torch.softmax(0.5 * torch.randn(LENGTH, len(VOCAB), generator=g, dtype=torch.float64), dim=1)
    A, B = (scale * torch.randn(len(VOCAB), len(VOCAB), generator=g, dtype=torch.float64) for _ in range(2))
    q, tilt = torch.empty(len(TEXTS), dtype=torch.float64), torch.empty(len(TEXTS), dtype=torch.float64)
    for i, x in enumerate(itertools.product(range(len(VOCAB)), repeat=LENGTH)):
        q[i] = math.prod(per_position[k, x[k]] for k in range(LENGTH))
        tilt[i] = A[x[0], x[1]] + B[x[1], x[2]]
    p = q * tilt.exp()
    return q, p / p.sum()


class ToySampler:
    """Draws TEXTS from a distribution: the comparison's sampler protocol (sample, tokenizer, data)."""

    def __init__(self, probs: torch.Tensor):
        self.probs = probs
        self.tokenizer = WordTokenizer(list(SPECIALS) + list(VOCAB))
        self.data = SimpleNamespace(block_size=LENGTH)
        self.info = {}

    def sample(self, n, temperature=1.0, psi=1.0, seed=0):
        idx = torch.multinomial(self.probs, n, replacement=True, generator=torch.Generator().manual_seed(seed))
        return [TEXTS[i] for i in idx.tolist()]


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties given their average rank."""
    order = torch.argsort(x, stable=True)
    r = torch.empty(len(x), dtype=torch.float64)
    r[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    for v in torch.unique(x):
        r[x == v] = r[x == v].mean()
    return r


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (tie-averaged) ranks."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def empirical(texts: list[str]) -> torch.Tensor:
    """The distribution over TEXTS of a sample: counts + 1/2 per text, normalised."""
    index = {t: i for i, t in enumerate(TEXTS)}
    counts = torch.full((len(TEXTS),), 0.5, dtype=torch.float64)
    for t in texts:
        counts[index[t]] += 1
    return counts / counts.sum()


def kl(p: torch.Tensor, r: torch.Tensor) -> float:
    return float((p * (p / r).log()).sum())


def ratio_check(seed: int = 0, samples: int = 20000, m: int = 8, alpha: float = 1.0,
                guide: GuideConfig = GUIDE) -> dict:
    """Train the post-hoc discriminator on the toy and measure it -> the figures (module docstring)."""
    q, p = toy_distributions(seed)
    base, target = ToySampler(q), ToySampler(p)
    cfg = GuideConfig(**{**guide.__dict__, "seed": seed})
    D, report = train_guide(base, target.sample(5000, seed=seed + 1), cfg, "cpu", draw_real=target.sample)
    d = logits_of(D, *encode_texts(TEXTS, base.tokenizer, LENGTH + 1), "cpu").double()
    sir = GuidedSampler(base, D, "sir", alpha, m=m).sample(samples, seed=seed + 2)
    return {"spearman": spearman(d, (p / q).log()), "kl_base": kl(p, empirical(base.sample(samples, seed=seed + 2))),
            "kl_sir": kl(p, empirical(sir)), "kl_base_exact": kl(p, q), "val_auc": report["val_auc"],
            "steps": report["steps"], "best_step": report["best_step"], "samples": samples, "m": m, "alpha": alpha}
