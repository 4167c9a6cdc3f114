"""NLL-test variants: the padding-included text-GAN figure, temperature, and the latent estimator;
then hand-computed checks that fail on an input/target misalignment, on pooling batches by their
means instead of per token, on a latent estimator other than the log-mean-exp over K draws, and
the VAE objective."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets.tokenizers import IGNORE_INDEX
from experiments.scoring.nll import latent_nll, lm_nll, posterior_nll, vae_objective

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


# ---- models whose predictions depend on their input in a known way

L = 5.0  # logit of the predicted token; every other token gets 0
HIT = math.log(1 + (V - 1) * math.exp(-L))  # -log p of the predicted token
MISS = math.log(math.exp(L) + V - 1)  # -log p of any other token


class Successor(nn.Module):
    """Predicts (current token + 1) mod V with logit L: on a sequence that counts up, every
    target is predicted (HIT nats) when inputs and targets are aligned as x_t -> y_t = x_{t+1};
    scored one position off, every target is missed (MISS nats). Takes and ignores the
    latent-variable keywords, so every estimator can score it."""

    def forward(self, idx, targets=None, z=None, noise=None, psi=None):
        return L * F.one_hot((idx + 1) % V, V).float(), None

    def make_noise(self, B, T, generator=None):
        return torch.zeros(B, T, 1)


class PriorEncoder(nn.Module):
    """q(z | x) = N(0, I) for every x: the importance weights p(z) / q(z | x) are exactly 1."""

    def posterior(self, y):
        return torch.zeros(y.size(0), 2), torch.zeros(y.size(0), 2)

    @staticmethod
    def sample(mean, logvar, generator=None):
        return mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator)


def counting(start, length, width):
    """x = start, start+1, ... (the inputs), y = x shifted by one (the targets), padded to width."""
    x = torch.zeros(width, dtype=torch.long)
    y = torch.full((width,), IGNORE_INDEX)
    x[:length] = (start + torch.arange(length)) % V
    y[:length] = (start + 1 + torch.arange(length)) % V
    return x, y


def batch(*rows):
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


ESTIMATORS = {
    "lm_nll": lambda m, b, **kw: lm_nll(m, b, "cpu", **kw),
    "latent_nll": lambda m, b, **kw: latent_nll(m, b, 3, "cpu", draw_latent=lambda *a: {"z": None}, **kw),
    "posterior_nll": lambda m, b, **kw: posterior_nll(m, PriorEncoder(), b, 2, "cpu", **kw),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_inputs_and_targets_are_aligned(name):
    """A model that knows every next token scores ~0 only if position t of the logits is
    scored against target t: one position off, every target costs MISS ~ L nats."""
    x, y = batch(counting(0, 6, 6), counting(3, 4, 6), counting(5, 1, 6))
    out = ESTIMATORS[name](Successor(), [(x, y)])
    assert out["tokens"] == 11 and out["sequences"] == 3
    assert out["nll"] == pytest.approx(HIT, rel=1e-4) and out["nll"] < 0.05
    # the same model scored against targets one position late (what a misaligned loop computes)
    late = y.roll(-1, dims=1)
    late[y == IGNORE_INDEX] = IGNORE_INDEX
    late[torch.arange(3), (y != IGNORE_INDEX).sum(1) - 1] = IGNORE_INDEX
    assert ESTIMATORS[name](Successor(), [(x, late)])["nll"] == pytest.approx(MISS, rel=1e-4)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_batches_of_different_sizes_are_pooled_per_token(name):
    """Batch 1: 8 predicted tokens (HIT each); batch 2: 2 missed tokens (MISS each). The figure
    is the token-weighted mean (8 HIT + 2 MISS) / 10, not the mean of the batch means."""
    b1 = batch(counting(0, 5, 5), counting(2, 3, 5))
    x2, y2 = batch(counting(1, 2, 5))
    y2[0, :2] = torch.tensor([4, 0])  # after 1 comes 4 (Successor says 2), after 2 comes 0 (it says 3)
    out = ESTIMATORS[name](Successor(), [b1, (x2, y2)], pad_len=5)
    want = (8 * HIT + 2 * MISS) / 10
    assert out["nll"] == pytest.approx(want, rel=1e-5)
    assert out["nll"] != pytest.approx((HIT + MISS) / 2, rel=0.1)  # the mean of the batch means
    assert out["tokens"] == 10 and out["sequences"] == 3
    assert out["nll_with_pad"] == pytest.approx((8 * HIT + 2 * MISS) / (3 * 5), rel=1e-5)
    assert out["bits"] == pytest.approx(want / math.log(2), rel=1e-5)
    assert out["ppl"] == pytest.approx(math.exp(want), rel=1e-5)


def test_latent_nll_is_the_log_mean_exp_over_k_draws():
    """With the K latents of each batch known, log p^(x) = log (1/K) sum_k p(x | z_k) per row,
    computed here in plain Python: not the mean of log p(x | z_k) (the K = 1 bound's average),
    nor the max."""
    model = Mixture()
    draws = [[0, 2], [1, 1], [2, 0], [1, 0], [0, 0], [2, 2]]  # z per row, for K = 3 draws x 2 batches
    calls = []

    def draw(model, B, T, generator):
        calls.append((B, T))
        return {"z": torch.tensor(draws[len(calls) - 1])}

    y1 = torch.tensor([[1, 2, 3], [5, 0, IGNORE_INDEX]])
    y2 = torch.tensor([[4, 4, IGNORE_INDEX], [0, IGNORE_INDEX, IGNORE_INDEX]])
    batches = [(torch.zeros_like(y1), y1), (torch.zeros_like(y2), y2)]
    out = latent_nll(model, batches, 3, "cpu", draw_latent=draw)
    assert calls == [(2, 3)] * 6  # K draws per batch, in batch order

    logq = model.table.detach().log_softmax(-1).tolist()  # (M, V)
    total, mean_of_logs = 0.0, 0.0
    for b, (_, y) in enumerate(batches):
        for row in range(2):
            tokens = [t for t in y[row].tolist() if t != IGNORE_INDEX]
            lp = [sum(logq[draws[3 * b + k][row]][t] for t in tokens) for k in range(3)]
            total -= math.log(sum(math.exp(v) for v in lp) / 3)
            mean_of_logs -= sum(lp) / 3
    assert out["nll"] == pytest.approx(total / 8, rel=1e-5)
    assert out["tokens"] == 8 and out["K"] == 3
    assert abs(total - mean_of_logs) / 8 > 0.05  # the hand value tells the two apart


def test_vae_objective_by_hand():
    """q(z | x) = the prior, so the KL is 0 and the free-bits term is free_bits per sentence:
    (reconstruction NLL + sentences x free_bits) / tokens."""
    b1 = batch(counting(0, 5, 5), counting(2, 3, 5))
    x2, y2 = batch(counting(1, 2, 5))
    y2[0, :2] = torch.tensor([4, 0])
    model, enc = Successor(), PriorEncoder()
    for free_bits in (0.0, 3.0):
        got = vae_objective(model, enc, [b1, (x2, y2)], free_bits, "cpu", seed=0)
        assert got == pytest.approx((8 * HIT + 2 * MISS + 3 * free_bits) / 10, rel=1e-5)
    assert model.training and enc.training
    model.eval()
    vae_objective(model, enc, [b1], 0.0, "cpu")
    assert not model.training and enc.training  # each module gets its own mode back


def test_modes_are_restored_even_when_a_pass_fails():
    x, y = batch(counting(0, 5, 5))
    model = Successor()
    with pytest.raises(ValueError, match="pad_len"):
        lm_nll(model, [(x, y)], "cpu", pad_len=3)
    assert model.training
    with pytest.raises(ValueError, match="temperature"):
        posterior_nll(model, PriorEncoder(), [(x, y)], 1, "cpu", temperature=0.0)
