"""GAN parts on CPU with tiny configs: mapping, generator, discriminator, relaxations, losses."""

import functools
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from baselines.sampling import generate
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, UNK_ID
from gan import (LOSSES, RELAXATIONS, STYLE_LAYERS, Discriminator, DiscriminatorConfig, Generator,
                 GeneratorConfig, MappingConfig, MappingNetwork, NoiseInjection, beta_schedule,
                 PosteriorEncoder, free_bits_kl, gaussian_kl, gradient_penalty, gumbel_softmax, info_loss, r1_penalty,
                 real_inputs, softmax_relax, straight_through)
from gan.generator import CrossAttentionStyle
from gan.losses import (d_loss_hinge, d_loss_rsgan, d_loss_standard, d_loss_wgan, g_loss_hinge, g_loss_rsgan,
                        g_loss_standard, g_loss_wgan)

V, BLOCK = 13, 10


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_mapping(**kw):
    return MappingConfig(**{**dict(z_dim=8, w_dim=12, n_mlp=3), **kw})


def tiny_gen(style_mode="cross_attn", **kw):
    cfg = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_out_layers=1, n_head=2, n_embd=16,
               noise_dim=4, style_mode=style_mode, n_style_tokens=3, mapping=tiny_mapping())
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(**{**cfg, **kw}))
    # the noise scales and the input-noise map start at zero; make them matter so that the
    # tests exercise the noise path
    with torch.no_grad():
        g.transformer.noise_proj.weight.normal_(0.0, 0.1)
        for block in g.transformer.h:
            block.noise.scale.normal_(0.0, 0.5)
    return g


def tiny_disc(latent_dim=0, **kw):
    torch.manual_seed(1)
    return Discriminator(DiscriminatorConfig(**{**dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2,
                                                       n_embd=16), **kw}), latent_dim=latent_dim)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


# ----- mapping -----

def test_mapping_shape_and_nonlinear():
    torch.manual_seed(0)
    m = MappingNetwork(tiny_mapping())
    z = torch.randn(256, 8)
    w = m(z)
    assert w.shape == (256, 12)
    # after pixel norm the input is u = z / rms(z); if the MLP were affine, w = [u, 1] A exactly.
    # the least-squares affine fit leaves a large residual only because of the nonlinearity
    u = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + 1e-8)
    X = torch.cat([u, torch.ones(256, 1)], dim=1).double()

    def rel_residual(Y):
        A = torch.linalg.lstsq(X, Y.double()).solution
        return ((X @ A - Y.double()).norm() / (Y.double() - Y.double().mean(0)).norm()).item()

    assert rel_residual(u @ torch.randn(8, 12) + 0.3) < 1e-5  # control: the fit recovers an affine map
    assert rel_residual(w.detach()) > 0.05


def test_equal_linear_lr_mul():
    m = MappingNetwork(tiny_mapping(lr_mul=0.01))
    lin = m.net[1]
    # stored N(0, 1) / lr_mul, used at lr_mul / sqrt(in): effective std 1 / sqrt(in)
    eff = lin.weight * lin.scale
    assert abs(eff.std().item() - 1 / math.sqrt(8)) < 0.15
    assert abs(lin.weight.std().item() - 100.0) < 20.0


def test_truncation_psi_zero_gives_w_avg():
    torch.manual_seed(0)
    m = MappingNetwork(tiny_mapping())
    for _ in range(3):
        m.update_w_avg(m(torch.randn(64, 8)))
    assert m.w_avg.abs().sum() > 0
    w = m(torch.randn(5, 8))
    assert torch.allclose(m.truncate(w, 0.0), m.w_avg.expand(5, -1))
    assert torch.equal(m.truncate(w, 1.0), w)
    # through the generator: psi = 0 makes every z produce the same logits
    g = tiny_gen()
    g.mapping.estimate_w_avg(256, generator=seeded(0))
    idx = torch.randint(0, V, (1, 6))
    noise = g.make_noise(1, 6, generator=seeded(1))
    a, _ = g(idx, z=torch.randn(1, 8), noise=noise, psi=0.0)
    b, _ = g(idx, z=torch.randn(1, 8), noise=noise, psi=0.0)
    assert torch.allclose(a, b, atol=1e-6)


# ----- generator -----

def test_noise_injection_zero_scale_is_identity():
    inj = NoiseInjection(8)
    x = torch.randn(2, 5, 8)
    assert torch.equal(inj(x), x)
    with torch.no_grad():
        inj.scale.fill_(0.5)
    noise = torch.randn(2, 5, 1)
    assert torch.allclose(inj(x, noise=noise), x + 0.5 * noise)


@pytest.mark.parametrize("style_mode", sorted(STYLE_LAYERS))
def test_forward_loss_and_config_round_trip(style_mode):
    g = tiny_gen(style_mode)
    idx = torch.randint(0, V, (3, 7))
    targets = idx.clone()
    targets[:, -2:] = IGNORE_INDEX
    logits, loss = g(idx, targets)
    assert logits.shape == (3, 7, V)
    assert abs(loss.item() - math.log(V)) < 0.7  # near uniform at initialisation
    expect = F.cross_entropy(logits[:, :-2].reshape(-1, V), targets[:, :-2].reshape(-1))
    assert torch.allclose(loss, expect)
    rebuilt = GeneratorConfig(**asdict(g.config))
    assert rebuilt == g.config and isinstance(rebuilt.mapping, MappingConfig)


def test_config_validation():
    with pytest.raises(ValueError):
        GeneratorConfig(style_mode="film")
    with pytest.raises(ValueError):
        GeneratorConfig(n_embd=10, n_head=4)
    with pytest.raises(ValueError):
        MappingConfig(lr_mul=0.0)
    with pytest.raises(ValueError):
        DiscriminatorConfig(pool="max")
    with pytest.raises(TypeError):
        GeneratorConfig(n_layers=3)  # unknown keyword: fails loudly


@pytest.mark.parametrize("style_mode", sorted(STYLE_LAYERS))
def test_fixed_z_noise_generator_identical_samples(style_mode):
    g = tiny_gen(style_mode)
    z, noise = torch.randn(4, 8), g.make_noise(4, BLOCK)
    a = g.sample(4, BLOCK, z=z, noise=noise, generator=seeded(3))
    b = g.sample(4, BLOCK, z=z, noise=noise, generator=seeded(3))
    assert torch.equal(a["ids"], b["ids"]) and torch.equal(a["mask"], b["mask"])
    # the generator alone fixes z and noise too
    c = g.sample(4, BLOCK, generator=seeded(5), relax=functools.partial(gumbel_softmax, beta=2.0))
    d = g.sample(4, BLOCK, generator=seeded(5), relax=functools.partial(gumbel_softmax, beta=2.0))
    assert torch.equal(c["ids"], d["ids"]) and torch.equal(c["soft"], d["soft"])
    e = g.sample(4, BLOCK, generator=seeded(6))
    assert not torch.equal(c["ids"], e["ids"])


@pytest.mark.parametrize("style_mode", sorted(STYLE_LAYERS))
def test_kv_cache_sampling_matches_teacher_forcing(style_mode):
    g = tiny_gen(style_mode)
    B = 5
    z, noise = torch.randn(B, 8), g.make_noise(B, BLOCK)
    seen = []

    def recording_relax(logits, generator=None):
        """A relaxation in sample's relax=(logits, generator) -> (soft, hard) form that records
        each step's logits (temperature 1: as the model produced them)."""
        seen.append(logits.detach())
        probs = F.softmax(logits.detach(), dim=-1)
        return probs, torch.multinomial(probs, 1, generator=generator).squeeze(1)

    out = g.sample(B, BLOCK, z=z, noise=noise, generator=seeded(0), relax=recording_relax)
    ids, mask = out["ids"], out["mask"]
    n_steps = len(seen)  # sampling stops once every row has ended
    assert not mask[:, n_steps:].any()
    # the tokens fed during sampling: <bos>, then every produced token (<pad> after <eos>)
    idx = torch.cat([torch.full((B, 1), BOS_ID), ids[:, :-1]], dim=1)
    logits, _ = g(idx, z=z, noise=noise)
    assert mask.any()
    for t, step in enumerate(seen):  # a finished row has left the batch: each step saw the rows still going
        assert step.size(0) == int(mask[:, t].sum())
        assert torch.allclose(step, logits[mask[:, t], t], atol=1e-5)
    # layout: valid up to and including <eos>, <pad> after
    for row, m in zip(ids, mask):
        n = int(m.sum())
        if (row == EOS_ID).any():
            assert int((row == EOS_ID).nonzero()[0]) == n - 1
        assert row[n:].eq(PAD_ID).all()


@pytest.mark.parametrize("style_mode", sorted(STYLE_LAYERS))
def test_generator_causal(style_mode):
    g = tiny_gen(style_mode)
    z, noise = torch.randn(2, 8), g.make_noise(2, 8)
    idx = torch.randint(0, V, (2, 8))
    t = 4
    idx2 = idx.clone()
    idx2[:, t + 1] = (idx[:, t + 1] + 1) % V
    a, _ = g(idx, z=z, noise=noise)
    b, _ = g(idx2, z=z, noise=noise)
    assert torch.allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-6)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-4)
    # later noise does not reach earlier positions either
    noise2 = noise.clone()
    noise2[:, t + 1:] = torch.randn_like(noise2[:, t + 1:])
    c, _ = g(idx, z=z, noise=noise2)
    assert torch.allclose(a[:, :t + 1], c[:, :t + 1], atol=1e-6)


@pytest.mark.parametrize("style_mode", sorted(STYLE_LAYERS))
def test_w_changes_outputs(style_mode):
    g = tiny_gen(style_mode)
    idx, noise = torch.randint(0, V, (2, 6)), g.make_noise(2, 6)
    a, _ = g(idx, z=torch.randn(2, 8), noise=noise)
    b, _ = g(idx, z=torch.randn(2, 8), noise=noise)
    # at GPT-2's small residual init the style's effect is small but far above float error (~1e-7)
    assert (a - b).abs().max() > 1e-5


def test_cross_attention_roles():
    cfg = GeneratorConfig(vocab_size=V, block_size=BLOCK, n_head=2, n_embd=16, n_style_tokens=3,
                          mapping=tiny_mapping())
    torch.manual_seed(0)
    xattn = CrossAttentionStyle(cfg)
    x, w = torch.randn(2, 7, 16), torch.randn(2, 12)
    k, v = xattn.context(w)
    assert k.shape == (2, 2, 3, 8)  # (B, nh, S, hs): keys from the 3 style tokens
    y = xattn(x, (k, v))
    assert y.shape == (2, 7, 16)  # one output per query position: the sequence asks
    # a position's output depends on its own query only: changing x at 5 changes only position 5
    x2 = x.clone()
    x2[:, 5] += 1.0
    y2 = xattn(x2, (k, v))
    assert torch.allclose(y[:, :5], y2[:, :5], atol=1e-6) and torch.allclose(y[:, 6:], y2[:, 6:], atol=1e-6)
    assert not torch.allclose(y[:, 5], y2[:, 5])
    # the style tokens are a set read by attention: permuting them changes nothing
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(y, xattn(x, (k[:, :, perm], v[:, :, perm])), atol=1e-6)
    assert not torch.allclose(y, xattn(x, xattn.context(torch.randn(2, 12))), atol=1e-4)


def test_generator_works_with_the_lm_sampler():
    g = tiny_gen().eval()
    out = generate(g, torch.full((3, 1), BOS_ID), max_new_tokens=BLOCK, generator=seeded(0))
    assert out.shape[0] == 3 and out.shape[1] <= BLOCK + 1


@pytest.mark.parametrize("name", sorted(RELAXATIONS))
def test_sample_soft_outputs(name):
    g = tiny_gen()
    out = g.sample(4, BLOCK, generator=seeded(0), relax=functools.partial(RELAXATIONS[name], beta=3.0))
    soft, ids, mask = out["soft"], out["ids"], out["mask"]
    assert soft.shape == (4, BLOCK, V) and soft.requires_grad
    assert torch.allclose(soft.sum(-1), torch.ones(4, BLOCK), atol=1e-5)
    assert soft[~mask].argmax(-1).eq(PAD_ID).all() and soft[~mask].max(-1).values.eq(1).all()
    if name != "softmax":  # gumbel and straight-through: the fed-back token is the argmax of the relaxed sample
        assert soft[mask].argmax(-1).eq(ids[mask]).all()
    assert out["w"].shape == (4, g.n_styles, 12)


def test_soft_path_gradient_flows_through_the_cache():
    # the noise of step 0 reaches step 3 only through the cached keys and values (the fed-back
    # tokens carry no gradient), so a gradient there proves the cache is not detached
    g = tiny_gen()
    noise = g.make_noise(4, 6).requires_grad_(True)
    out = g.sample(4, 6, noise=noise, generator=seeded(0), relax=functools.partial(gumbel_softmax, beta=1.0))
    alive = out["mask"][:, 3]  # rows still writing at step 3
    assert alive.any()
    (out["soft"][alive, 3] * torch.randn(int(alive.sum()), V)).sum().backward()
    assert noise.grad[alive, 0].abs().sum() > 0 and noise.grad[:, 4:].abs().sum() == 0


# ----- discriminator -----

@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_discriminator_one_hot_equals_ids(pool):
    d = tiny_disc(pool=pool).eval()
    ids = torch.randint(0, V, (3, 8))
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1, 5:] = False
    a = d(ids, mask)
    b = d(F.one_hot(ids, V).float(), mask)
    assert a.shape == (3,)
    assert torch.allclose(a, b, atol=1e-6)
    # masked positions do not influence the score
    ids2 = ids.clone()
    ids2[1, 6] = (ids[1, 6] + 1) % V
    assert torch.allclose(d(ids2, mask), a, atol=1e-6)
    ids2[1, 2] = (ids[1, 2] + 1) % V
    assert not torch.allclose(d(ids2, mask)[1], a[1], atol=1e-6)


def test_spectral_norm_option():
    d = tiny_disc(spectral_norm=True)
    linears = [m for m in d.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))]
    assert linears and all(parametrize.is_parametrized(m, "weight") for m in linears)
    for _ in range(5):  # power iterations run in training-mode forwards
        d(torch.randint(0, V, (2, 6)))
    d.eval()
    for m in linears:
        assert abs(torch.linalg.matrix_norm(m.weight.detach(), ord=2).item() - 1.0) < 0.05
    x = F.one_hot(torch.randint(0, V, (2, 6)), V).float()
    assert torch.allclose(d(x), d(x.argmax(-1)), atol=1e-6)
    assert not any(parametrize.is_parametrized(m) for m in tiny_disc().modules())


def test_real_inputs_layout():
    targets = torch.tensor([[5, 6, EOS_ID, IGNORE_INDEX], [7, EOS_ID, IGNORE_INDEX, IGNORE_INDEX]])
    x, mask = real_inputs(targets, V)
    assert x.shape == (2, 4, V) and mask.tolist() == [[True, True, True, False], [True, True, False, False]]
    assert x.argmax(-1)[~mask].eq(PAD_ID).all() and x.sum(-1).eq(1).all()


# ----- one D step, one G step -----

def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_d_step_and_g_step_change_only_their_params(loss_name):
    d_fn, g_fn = LOSSES[loss_name]
    g, d = tiny_gen(), tiny_disc()
    relax = functools.partial(gumbel_softmax, beta=2.0)
    targets = torch.tensor([[5, 6, 7, EOS_ID, IGNORE_INDEX, IGNORE_INDEX]] * 4)
    real, real_mask = real_inputs(targets, V)
    T = targets.size(1)

    # D step: fakes detached, optimizer over D only
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    g_before, d_before = _snapshot(g), _snapshot(d)
    fake = g.sample(4, T, generator=seeded(0), relax=relax)
    loss = d_fn(d(real, real_mask), d(fake["soft"].detach(), fake["mask"]))
    if loss_name == "wgan-gp":
        loss = loss + gradient_penalty(d, real, fake["soft"], real_mask | fake["mask"], generator=seeded(1))
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    assert not _changed(g_before, g)
    changed = _changed(d_before, d)
    # every weight moves; the score's bias (and ln_f.bias before it) may not: rsgan, wgan and
    # hinge at init (both hinges active) depend on r - f only, where a shared offset cancels
    assert {n for n in d_before if not n.endswith("bias")} <= changed

    # G step: D frozen, optimizer over G (mapping included)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    d.requires_grad_(False)
    g_before, d_before = _snapshot(g), _snapshot(d)
    fake = g.sample(4, T, generator=seeded(2), relax=relax)
    loss = g_fn(d(real, real_mask), d(fake["soft"], fake["mask"]))
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    d.requires_grad_(True)
    assert not _changed(d_before, d)
    changed = _changed(g_before, g)
    assert changed == set(g_before), f"unchanged: {set(g_before) - changed}"
    assert any(n.startswith("mapping.") for n in changed)


# ----- relaxations -----

def test_gumbel_softmax_approaches_one_hot():
    logits = torch.randn(256, V)
    means = []
    for beta in (1.0, 10.0, 1000.0):
        soft, hard = gumbel_softmax(logits, beta, generator=seeded(0))
        assert torch.allclose(soft.sum(-1), torch.ones(256), atol=1e-5)
        assert soft.argmax(-1).eq(hard).all()  # same noise: the hard token is the relaxed sample's argmax
        means.append(soft.max(-1).values.mean().item())
    assert means[0] < means[1] < means[2] and means[2] > 0.99


def test_gumbel_argmax_samples_the_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0]]).expand(20000, -1)
    _, hard = gumbel_softmax(logits, 1.0, generator=seeded(0))
    freq = torch.bincount(hard, minlength=4).float() / 20000
    assert torch.allclose(freq, F.softmax(logits[0], -1), atol=0.015)


def test_straight_through_and_softmax_relax():
    logits = torch.randn(8, V, requires_grad=True)
    out, hard = straight_through(logits, 2.0, generator=seeded(0))
    assert torch.allclose(out, F.one_hot(hard, V).float(), atol=1e-6)  # one-hot forward
    (out * torch.randn(8, V)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # soft backward
    soft, hard = softmax_relax(logits, generator=seeded(0))
    assert torch.allclose(soft, F.softmax(logits, -1)) and hard.shape == (8,)


def test_beta_schedule():
    assert beta_schedule(0, 100, 1000.0, "exp") == pytest.approx(1.0)
    assert beta_schedule(50, 100, 1000.0, "exp") == pytest.approx(1000.0 ** 0.5)
    assert beta_schedule(100, 100, 1000.0, "exp") == pytest.approx(1000.0)
    assert beta_schedule(50, 100, 11.0, "linear") == pytest.approx(6.0)
    assert beta_schedule(7, 100, 5.0, "constant") == 5.0
    assert beta_schedule(500, 100, 5.0, "linear") == pytest.approx(5.0)
    with pytest.raises(ValueError):
        beta_schedule(1, 100, 5.0, "cosine")


# ----- losses -----

def sp(x):  # softplus by hand
    return math.log1p(math.exp(x))


def test_losses_hand_computed():
    r, f = torch.tensor([0.0, 2.0]), torch.tensor([1.0, -1.0])
    assert d_loss_standard(r, f).item() == pytest.approx((sp(0) + sp(-2)) / 2 + (sp(1) + sp(-1)) / 2)
    assert g_loss_standard(r, f).item() == pytest.approx((sp(-1) + sp(1)) / 2)
    # relativistic: pairs (0, 1) and (2, -1): r - f = -1 and 3
    assert d_loss_rsgan(r, f).item() == pytest.approx((sp(1) + sp(-3)) / 2)
    assert g_loss_rsgan(r, f).item() == pytest.approx((sp(-1) + sp(3)) / 2)
    assert d_loss_wgan(r, f).item() == pytest.approx(0.0 - 1.0)
    assert g_loss_wgan(r, f).item() == pytest.approx(0.0)
    # hinge: relu(1 - r) = (1, 0); relu(1 + f) = (2, 0)
    assert d_loss_hinge(r, f).item() == pytest.approx(0.5 + 1.0)
    assert g_loss_hinge(r, f).item() == pytest.approx(0.0)
    assert set(LOSSES) == {"standard", "rsgan", "wgan-gp", "hinge"}


def test_gradient_penalty_and_r1_on_linear_critic():
    # D(x) = <A, x> has input gradient A everywhere: ||grad|| = ||A|| at every interpolate
    A = torch.randn(5, V)

    def linear_critic(x, mask):
        return (x * A).sum(dim=(1, 2))

    real = F.one_hot(torch.randint(0, V, (3, 5)), V).float()
    fake = F.softmax(torch.randn(3, 5, V, requires_grad=True), -1)
    norm = A.norm().item()
    gp = gradient_penalty(linear_critic, real, fake, weight=10.0, generator=seeded(0))
    assert gp.item() == pytest.approx(10.0 * (norm - 1.0) ** 2, rel=1e-5)
    assert r1_penalty(linear_critic, real, gamma=4.0).item() == pytest.approx(2.0 * norm ** 2, rel=1e-5)
    # scaled so that ||A|| = 1: no penalty
    A = A / A.norm()
    assert gradient_penalty(linear_critic, real, fake).item() == pytest.approx(0.0, abs=1e-8)


def test_gradient_penalty_trains_d():
    d = tiny_disc()
    targets = torch.tensor([[5, 6, EOS_ID, IGNORE_INDEX]] * 3)
    real, mask = real_inputs(targets, V)
    fake = F.softmax(torch.randn(3, 4, V), -1)
    gp = gradient_penalty(d, real, fake, mask, generator=seeded(0))
    r1 = r1_penalty(d, real, mask)
    (gp + r1).backward()
    assert all(p.grad is not None for n, p in d.named_parameters() if n.startswith("h."))


# ----- InfoGAN: latent recovery -----

def test_info_loss_hand_computed():
    z = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    z_pred = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # squared errors 1, 0, 4, 1 -> 0.5 * mean = 0.75
    assert info_loss(z_pred, z).item() == pytest.approx(0.75)
    assert info_loss(z, z).item() == 0.0
    # Q that knows nothing predicts E[z] = 0: 0.5 * E[z^2] = 0.5 per dimension
    zz = torch.randn(20000, 4, generator=seeded(0))
    assert info_loss(torch.zeros_like(zz), zz).item() == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="one shape"):
        info_loss(z_pred[:, :1], z)


def test_latent_head_shares_the_trunk_and_is_optional():
    d = tiny_disc(latent_dim=8)
    targets = torch.tensor([[5, 6, EOS_ID, IGNORE_INDEX]] * 3)
    real, mask = real_inputs(targets, V)
    scores, z_pred = d(real, mask, return_latent=True)
    assert scores.shape == (3,) and z_pred.shape == (3, 8)
    assert torch.equal(scores, d(real, mask))  # the score does not depend on asking for z
    info_loss(z_pred, torch.randn(3, 8)).backward()
    # Q's gradient reaches the shared trunk, not the score head
    assert d.h[0].attn.c_attn.weight.grad.abs().sum() > 0 and d.head.weight.grad is None
    with pytest.raises(ValueError, match="latent_dim"):
        tiny_disc()(real, mask, return_latent=True)
    with pytest.raises(ValueError, match="latent_dim"):
        tiny_disc(latent_dim=-1)


def test_info_term_makes_the_generator_use_z():
    """A generator that ignores z (noise maps at zero, no style-dependence) trained on the
    InfoGAN term alone comes to write z into its sentences: latent_usage rises from ~0."""
    from experiments.scoring.nll import latent_usage
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(vocab_size=V, block_size=6, n_layer=1, n_out_layers=1, n_head=2, n_embd=16,
                                  noise_dim=4, n_style_tokens=2, mapping=tiny_mapping(lr_mul=1.0)))
    d = tiny_disc(latent_dim=8, block_size=6)
    x = torch.tensor([[BOS_ID, 5, 6, 7, 8, 9]] * 8)
    y = torch.tensor([[5, 6, 7, 8, 9, EOS_ID]] * 8)
    before = latent_usage(g, x, y, n_z=8)
    opt = torch.optim.Adam(list(g.parameters()) + list(d.parameters()), lr=3e-3)
    relax = functools.partial(gumbel_softmax, beta=1.0)
    losses = []
    for step in range(120):
        z = torch.randn(64, 8)
        fake = g.sample(64, 6, z=z, relax=relax)
        _, z_pred = d(fake["soft"], fake["mask"], return_latent=True)
        loss = info_loss(z_pred, z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = latent_usage(g, x, y, n_z=8)
    assert sum(losses[-30:]) / 30 < 0.49  # Q reads some of z back (0.5 = nothing)
    assert before < 1e-4 and after > 0.1, (before, after)  # nats per token, at most ln 13 = 2.56


# ----- VAE pretraining: posterior encoder, KL with free bits, importance-sampled NLL -----

def test_gaussian_kl_and_free_bits_hand_computed():
    mean = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    kl = gaussian_kl(mean, logvar)
    # 0.5 * (1 + 1 - 1 - 0) = 0.5; 0.5 * (0 + 2 - 1 - ln 2); zeros for the prior itself
    assert kl[0, 0].item() == pytest.approx(0.5)
    assert kl[0, 1].item() == pytest.approx(0.5 * (1.0 - math.log(2.0)))
    assert kl[1].abs().sum().item() == 0.0
    # batch means per dimension: 0.25 and 0.5 * 0.5 * (1 - ln 2) = 0.0767
    assert free_bits_kl(kl).item() == pytest.approx(0.25 + 0.25 * (1.0 - math.log(2.0)))
    # a target of 1 nat over 2 dimensions: each dimension counts at least 0.5
    assert free_bits_kl(kl, free_bits=1.0).item() == pytest.approx(1.0)
    # the clamp passes no gradient to dimensions under their share
    m = mean.clone().requires_grad_(True)
    free_bits_kl(gaussian_kl(m, logvar), free_bits=1.0).backward()
    assert m.grad.abs().sum().item() == 0.0


def test_posterior_encoder_starts_at_the_prior_and_reads_only_the_sentence():
    enc = PosteriorEncoder(DiscriminatorConfig(vocab_size=V, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16), z_dim=8)
    ids = torch.tensor([[5, 6, EOS_ID, PAD_ID], [7, EOS_ID, PAD_ID, PAD_ID]])
    mask = ids != PAD_ID
    mean, logvar = enc(ids, mask)
    assert mean.shape == logvar.shape == (2, 8)
    assert mean.abs().sum() == 0 and logvar.abs().sum() == 0  # q(z | x) = N(0, I) at init
    with torch.no_grad():
        enc.to_posterior.weight.normal_()
    m1, _ = enc(ids, mask)
    m2, _ = enc(ids.masked_fill(~mask, 9), mask)  # what lies under the padding is not read
    assert torch.allclose(m1, m2, atol=1e-6) and not torch.allclose(m1[0], m1[1])
    z = PosteriorEncoder.sample(m1, torch.full_like(m1, -30.0))  # tiny variance: z = mean
    assert torch.allclose(z, m1, atol=1e-5)
    assert not hasattr(enc.body, "head")  # no unused score head among the parameters


def test_posterior_nll_when_z_is_ignored():
    """With the style path cut (z ignored) and the noise maps at zero (their init), p(x | u)
    = p(x) for every latent. Then with q = the prior every estimator is exact, for any K;
    with another q the importance weights p(z) / q(z | x) are what is left: K = 1 pays
    about KL(q || p) per sentence (the ELBO's gap) and larger K closes the gap."""
    from experiments.scoring.nll import latent_nll, posterior_nll
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(vocab_size=V, block_size=6, n_layer=1, n_out_layers=1, n_head=2, n_embd=16,
                                  noise_dim=4, n_style_tokens=2, mapping=tiny_mapping()))
    with torch.no_grad():
        for block in g.transformer.h:
            block.style.c_proj.weight.zero_()
    enc = PosteriorEncoder(DiscriminatorConfig(vocab_size=V, block_size=6, n_layer=1, n_head=2, n_embd=16), z_dim=8)
    x = torch.tensor([[BOS_ID, 5, 6, 7, 8, 9], [BOS_ID, 4, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    y = torch.tensor([[5, 6, 7, 8, 9, EOS_ID], [4, EOS_ID, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    logits, loss = g(x, y)
    exact = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE_INDEX, reduction="sum").item() / 8
    cpu = torch.device("cpu")
    for K in (1, 5):  # q = N(0, I) at init: the prior
        assert posterior_nll(g, enc, [(x, y)], K, cpu)["nll"] == pytest.approx(exact, rel=1e-5)
        assert latent_nll(g, [(x, y)], K, cpu)["nll"] == pytest.approx(exact, rel=1e-5)
    with torch.no_grad():  # a proposal unlike the prior
        enc.to_posterior.bias[:8].fill_(0.5)  # mean 0.5 in every dimension, unit variance
    kl_per_token = 2 * 8 * 0.5 * 0.25 / 8  # KL(N(0.5, 1) || N(0, 1)) = 0.125 per dimension; 2 sentences, 8 tokens
    est = {K: sum(posterior_nll(g, enc, [(x, y)], K, cpu, seed=s)["nll"] for s in range(200)) / 200 for K in (1, 16)}
    assert est[1] == pytest.approx(exact + kl_per_token, abs=0.02)
    assert exact < est[16] < est[1]


def test_vae_path_trains_a_decoder_that_uses_z():
    """The VAE pretraining path end to end on a task that needs z: random 3-token sentences
    and a decoder whose inputs are all <unk> after <bos>, so only z can tell it the tokens.
    Reconstruction falls well below the ln 8 nats per token that ignoring z costs, and the
    generator's predictions come to depend on z (latent_usage). AdaLN styles: in this budget
    the cross-attention style path stays collapsed (rec ~1.56, usage ~0; research/gan)."""
    from experiments.scoring.nll import latent_usage
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(vocab_size=V, block_size=4, n_layer=1, n_out_layers=1, n_head=2, n_embd=32,
                                  noise_dim=4, style_mode="adaln", mapping=tiny_mapping(lr_mul=1.0)))
    enc = PosteriorEncoder(DiscriminatorConfig(vocab_size=V, block_size=4, n_layer=1, n_head=2, n_embd=32), z_dim=8)
    opt = torch.optim.Adam(list(g.parameters()) + list(enc.parameters()), lr=3e-3)
    words = torch.arange(5, 13)  # 8 words
    recs = []
    for step in range(300):
        y = torch.cat([words[torch.randint(0, 8, (64, 3))], torch.full((64, 1), EOS_ID)], dim=1)  # (64, 4)
        x = torch.cat([torch.full((64, 1), BOS_ID), torch.full((64, 3), UNK_ID)], dim=1)  # nothing but z to go on
        mean, logvar = enc(y, torch.ones_like(y, dtype=torch.bool))
        _, rec = g(x, y, z=PosteriorEncoder.sample(mean, logvar))
        loss = rec + free_bits_kl(gaussian_kl(mean, logvar), free_bits=8.0) / 4
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        recs.append(rec.item())
    # ignoring z: 3 tokens at ln 8 and a certain <eos>, 0.75 ln 8 = 1.56 nats per token
    assert sum(recs[-20:]) / 20 < 0.75 * math.log(8) - 0.12, recs[-20:]
    assert latent_usage(g, x[:8], y[:8], n_z=8) > 0.05
