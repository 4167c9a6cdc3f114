"""Discriminator-guided sampling (gan/guided.py): the acceptance rule and the resampling weights on
hand-computed cases, and the samplers on a toy generator whose density ratio is known."""

import math
from collections import Counter

import pytest
import torch

from gan.guided import GuidedStats, drs_acceptance, rejection_sample, sir_sample, sir_weights

# a toy generator over four "texts" and the data distribution it misses
P_G = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
P_DATA = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
OPTIMAL = {x: math.log(P_DATA[x] / P_G[x]) for x in P_G}  # the Bayes-optimal discriminator's logit


def propose(k, generator):
    idx = torch.multinomial(torch.tensor(list(P_G.values())), k, replacement=True, generator=generator)
    return [list(P_G)[i] for i in idx.tolist()]


def score_with(table):
    return lambda xs: torch.tensor([table[x] for x in xs], dtype=torch.float64)


def frequencies(samples):
    counts = Counter(samples)
    return {x: counts[x] / len(samples) for x in P_G}


def test_drs_acceptance_by_hand():
    # gamma = 0: sigmoid(F) = 1 / (exp(d_max - d) + 1 - exp(-eps))
    d, d_max, eps = torch.tensor([0.0, -1.0, -3.0]), 0.0, 1e-6
    want = [1 / (math.exp(d_max - v) + 1 - math.exp(-eps)) for v in (0.0, -1.0, -3.0)]
    assert drs_acceptance(d, d_max, 0.0, eps).tolist() == pytest.approx(want, rel=1e-6)
    assert drs_acceptance(d, d_max).tolist() == pytest.approx([1.0, math.exp(-1), math.exp(-3)], rel=1e-5)
    # gamma shifts the logit F: d = -1, d_max = 0, gamma = 2 -> F = -1 - log(1 - e^(-1 - eps)) - 2
    f = -1 - math.log(1 - math.exp(-1 - eps)) - 2
    assert drs_acceptance(torch.tensor([-1.0]), 0.0, 2.0).item() == pytest.approx(1 / (1 + math.exp(-f)), rel=1e-6)
    assert drs_acceptance(torch.tensor([-1.0]), 0.0, -50.0).item() == pytest.approx(1.0)  # gamma -> -inf: all


def test_sir_weights_by_hand():
    w = sir_weights(torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]]), alpha=1.0)
    assert w.flatten().tolist() == pytest.approx([0.25, 0.75, 0.5, 0.5])  # each group sums to 1
    assert sir_weights(torch.tensor([0.0, math.log(3.0)]), alpha=2.0).tolist() == pytest.approx([0.1, 0.9])
    assert sir_weights(torch.tensor([5.0, -5.0]), alpha=0.0).tolist() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("sampler", ["drs", "sir"])
def test_a_constant_discriminator_leaves_the_base_sampler(sampler):
    """Seeded: 20,000 samples guided by a constant logit match the generator's own frequencies
    (binomial standard error ~0.0035; tolerance 0.015)."""
    g = torch.Generator().manual_seed(0)
    constant = score_with({x: 0.7 for x in P_G})
    if sampler == "drs":
        samples, stats = rejection_sample(propose, constant, 20000, gamma=0.0, generator=g)
        assert stats.cost == pytest.approx(1.0, abs=1e-3)  # every candidate kept (1 - 1e-6)
    else:
        samples, stats = sir_sample(propose, constant, 20000, m=4, alpha=1.0, generator=g)
        assert stats.cost == 4.0
    for x, f in frequencies(samples).items():
        assert f == pytest.approx(P_G[x], abs=0.015), (x, f)


def test_the_optimal_discriminator_recovers_the_data_distribution():
    """With d = log(p_data / p_g), DRS at gamma = 0 samples p_data exactly; SIR with many candidates
    approaches it (m = 64: within a few hundredths); both cost more than the base sampler."""
    g = torch.Generator().manual_seed(1)
    samples, stats = rejection_sample(propose, score_with(OPTIMAL), 20000, gamma=0.0, generator=g, burn_in=100)
    for x, f in frequencies(samples).items():
        assert f == pytest.approx(P_DATA[x], abs=0.015), (x, f)
    # acceptance exp(d - d_max) averages sum_x p_g(x) * ratio(x) / max ratio = 1 / 4: four candidates a sample
    assert stats.cost == pytest.approx(4.0, rel=0.05)
    samples, stats = sir_sample(propose, score_with(OPTIMAL), 20000, m=64, alpha=1.0, generator=g)
    for x, f in frequencies(samples).items():
        assert f == pytest.approx(P_DATA[x], abs=0.03), (x, f)


def test_strength_knobs_move_towards_the_discriminator():
    """Larger gamma (DRS) or alpha (SIR) keeps more of what D prefers ('d')."""
    share = []
    for gamma in (-10.0, 0.0, 3.0):
        samples, _ = rejection_sample(propose, score_with(OPTIMAL), 5000, gamma, torch.Generator().manual_seed(2))
        share.append(frequencies(samples)["d"])
    assert share[0] == pytest.approx(P_G["d"], abs=0.02) and share[0] < share[1] < share[2]
    share = [frequencies(sir_sample(propose, score_with(OPTIMAL), 5000, 8, alpha, torch.Generator().manual_seed(3))[0])["d"]
             for alpha in (0.0, 1.0, 4.0)]
    assert share[0] == pytest.approx(P_G["d"], abs=0.02) and share[0] < share[1] < share[2]


def test_samplers_are_reproducible_and_refuse_hopeless_settings():
    a = rejection_sample(propose, score_with(OPTIMAL), 50, 1.0, torch.Generator().manual_seed(4))[0]
    assert a == rejection_sample(propose, score_with(OPTIMAL), 50, 1.0, torch.Generator().manual_seed(4))[0]
    with pytest.raises(RuntimeError, match="lower gamma"):
        rejection_sample(propose, score_with(OPTIMAL), 50, 60.0, torch.Generator().manual_seed(4), burn_in=10)
    with pytest.raises(ValueError, match="at least one candidate"):
        sir_sample(propose, score_with(OPTIMAL), 5, 0, 1.0, torch.Generator())
    assert GuidedStats(proposed=10, kept=0).cost == 10.0
