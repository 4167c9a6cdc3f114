"""NLL-test variants: the padding-included text-GAN figure, temperature, and the latent estimator."""

import math

import pytest
import torch
import torch.nn as nn

from datasets.tokenizers import IGNORE_INDEX
from experiments.scoring.nll import latent_nll, lm_nll

V, M = 6, 3


class Uniform(nn.Module):
    """p(x_t) = 1/V everywhere: NLL ln V per token whatever the data."""

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, V), None


class Mixture(nn.Module):
    """A latent-variable toy whose likelihood is known exactly: z uniform on M components,
    p(x | z) = prod_t q_z(x_t), each q_z a unigram distribution over V symbols."""

    def __init__(self, spread=3.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(spread * torch.randn(M, V, generator=g))  # (M, V) logits

    def forward(self, idx, targets=None, z=None):
        B, T = idx.shape
        return self.table[z][:, None, :].expand(B, T, V), None  # (B, T, V)

    def exact_log_px(self, y):
        """log p(x) = logsumexp_m sum_t log q_m(x_t) - log M, per row; padding skipped."""
        logq = self.table.log_softmax(-1)  # (M, V)
        mask = y != IGNORE_INDEX
        per = logq[:, y.clamp(min=0)] * mask  # (M, B, T)
        return torch.logsumexp(per.sum(-1), dim=0) - math.log(M)  # (B,)


def draw_z(model, B, T, generator):
    return {"z": torch.randint(M, (B,), generator=generator)}


def toy_batches():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(V, (8, 5), generator=g)
    y[0, 3:] = IGNORE_INDEX  # two padded rows
    y[5, 1:] = IGNORE_INDEX
    return [(torch.zeros_like(y), y)]


def exact_nll(model, batches):
    total = sum(-model.exact_log_px(y).sum().item() for _, y in batches)
    return total / sum(int((y != IGNORE_INDEX).sum()) for _, y in batches)


def test_nll_with_pad_is_the_sum_over_all_padded_positions():
    x = torch.zeros(4, 3, dtype=torch.long)
    y = torch.tensor([[1, 2, 3], [1, IGNORE_INDEX, IGNORE_INDEX], [1, 2, IGNORE_INDEX], [4, 5, 1]])
    out = lm_nll(Uniform(), [(x, y)], "cpu", pad_len=10)
    assert out["nll"] == pytest.approx(math.log(V))  # per real token
    assert out["tokens"] == 9 and out["sequences"] == 4
    # 9 real tokens at ln V, 31 pad positions counted at -log 1 = 0, over 4 x 10 positions
    assert out["nll_with_pad"] == pytest.approx(9 * math.log(V) / 40)
    assert "nll_with_pad" not in lm_nll(Uniform(), [(x, y)], "cpu")
    with pytest.raises(ValueError, match="pad_len"):
        lm_nll(Uniform(), [(x, y)], "cpu", pad_len=2)


class FirstComponent(nn.Module):
    """The mixture's component 0 as a plain language model (no latent)."""

    def __init__(self, mixture):
        super().__init__()
        self.mixture = mixture

    def forward(self, idx, targets=None):
        return self.mixture(idx, z=torch.zeros(idx.size(0), dtype=torch.long))


def test_lm_nll_temperature_scales_the_logits():
    model = Mixture()
    batches = toy_batches()
    _, y = batches[0]
    for t in (0.5, 1.0, 2.0):
        logp = (model.table[0] / t).log_softmax(-1)
        want = -logp[y[y != IGNORE_INDEX]].mean().item()
        assert lm_nll(FirstComponent(model), batches, "cpu", temperature=t)["nll"] == pytest.approx(want, rel=1e-6)


def test_latent_nll_converges_to_the_exact_likelihood():
    model = Mixture()
    batches = toy_batches()
    exact = exact_nll(model, batches)
    est = latent_nll(model, batches, K=4000, device="cpu", draw_latent=draw_z, seed=0)
    assert est["nll"] == pytest.approx(exact, abs=0.01)
    assert est["K"] == 4000 and est["tokens"] == int((batches[0][1] != IGNORE_INDEX).sum())


def test_latent_nll_is_an_upper_bound_in_expectation_tightening_with_k():
    model = Mixture()
    batches = toy_batches()
    exact = exact_nll(model, batches)
    mean = {K: sum(latent_nll(model, batches, K, "cpu", draw_latent=draw_z, seed=s)["nll"] for s in range(200)) / 200
            for K in (1, 4, 32)}
    assert mean[1] > mean[4] > mean[32] > exact  # Jensen: E[-log mean_k p(x|z_k)] >= -log p(x)
    assert mean[32] - exact < 0.25 * (mean[1] - exact)


def test_latent_nll_of_a_model_that_ignores_its_latent_is_lm_nll():
    model = Mixture()
    with torch.no_grad():
        model.table[1:] = model.table[0]  # every component the same: p(x | z) = p(x)
    batches = toy_batches()
    want = lm_nll(FirstComponent(model), batches, "cpu", pad_len=5)
    for K in (1, 7):
        got = latent_nll(model, batches, K, "cpu", draw_latent=draw_z, pad_len=5)
        assert got["nll"] == pytest.approx(want["nll"], rel=1e-6)
        assert got["nll_with_pad"] == pytest.approx(want["nll_with_pad"], rel=1e-6)


def test_latent_nll_is_deterministic_given_the_seed():
    model, batches = Mixture(), toy_batches()
    a = latent_nll(model, batches, 3, "cpu", draw_latent=draw_z, seed=5)["nll"]
    assert a == latent_nll(model, batches, 3, "cpu", draw_latent=draw_z, seed=5)["nll"]
    with pytest.raises(ValueError, match="K"):
        latent_nll(model, batches, 0, "cpu", draw_latent=draw_z)
