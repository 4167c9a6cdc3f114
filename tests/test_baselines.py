"""Properties every language model in the registry must have, on tiny CPU configs.

Loss at initialisation near ln(V); causality; a small batch can be overfit; sampling
stays in the vocabulary and stops at <eos>; evaluation does not depend on the rest of
the batch; incremental decoding equals recomputation; checkpoints round-trip. Plus
model-specific checks: from-scratch recurrent cells against torch.nn cells, the count
bigram against counts made by hand, BatchNorm statistics that ignore padding, and the
WaveNet against the lecture's network applied to one window.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn as nn

from baselines import MODELS
from baselines.bigram import CountBigram, CountBigramConfig
from baselines.mlp import MLP, MaskedBatchNorm1d, MLPConfig
from baselines.rnn import GRUCell, LSTMCell, RNNCell
from baselines.sampling import generate
from baselines.wavenet import WaveNet, WaveNetConfig
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID

V = 16           # vocabulary of the tiny configs (4 specials + 12 symbols)
BLOCK_SIZE = 12  # longest sequence: <bos> + up to 11 symbols

# sizes small enough for CPU tests; every registry entry must have one
TINY = {
    "bigram": dict(),
    "bigram-neural": dict(),
    "mlp": dict(context=4, n_embd=8, n_embd2=32),
    "wavenet": dict(context=8, n_embd=8, n_hidden=32),
    "rnn": dict(n_embd=16, n_embd2=32),
    "gru": dict(n_embd=16, n_embd2=32),
    "lstm": dict(n_embd=16, n_embd2=32),
    "bow": dict(n_embd=16, n_embd2=32),
    "gpt2": dict(n_layer=2, n_head=2, n_embd=32),
}
NAMES = list(MODELS)
CACHED = [n for n in NAMES if hasattr(MODELS[n][0], "init_cache")]
BATCHNORM = ["mlp", "wavenet"]


def build(name, seed=0, **overrides):
    model_cls, config_cls = MODELS[name]
    torch.manual_seed(seed)
    config = config_cls(vocab_size=V, block_size=BLOCK_SIZE, **{**TINY[name], **overrides})
    return model_cls(config)


def sequence_batch(lengths, seed=0):
    """The trainer's per-sequence format: x = [BOS, t1..tn, PAD...], y = [t1..tn, EOS, -1...]."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths) + 1
    x = torch.full((len(lengths), T), PAD_ID)
    y = torch.full((len(lengths), T), IGNORE_INDEX)
    for b, n in enumerate(lengths):
        tokens = torch.randint(4, V, (n,), generator=g)
        x[b, 0] = BOS_ID
        x[b, 1:n + 1] = tokens
        y[b, :n] = tokens
        y[b, n] = EOS_ID
    return x, y


def ready(model, x, y):
    """A model with non-trivial state: the count bigram fitted; parameters jittered (the
    neural bigram starts as all zeros, which would hide any dependence on the input);
    BatchNorm running statistics moved away from their initial values."""
    if getattr(model, "closed_form", False):
        model.fit([(x, y)])
    else:
        model.train()
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            for _ in range(3):
                model(x, y)  # forward passes in train mode update BatchNorm's running statistics
    return model.eval()


def test_every_registered_model_has_a_tiny_config():
    assert set(TINY) == set(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_loss_at_init_is_near_ln_vocab(name):
    x, y = sequence_batch([11, 7, 9, 4, 10, 6, 11, 8])
    _, loss = build(name)(x, y)
    assert abs(loss.item() - math.log(V)) < 0.3  # the count bigram starts uniform: exactly ln(V)


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_the_mean_nll_over_non_ignored_targets(name):
    x, y = sequence_batch([11, 3, 7, 1])
    model = ready(build(name), x, y)
    logits, loss = model(x, y)
    valid = y != IGNORE_INDEX
    nll = -logits.float().log_softmax(-1)[valid].gather(-1, y[valid][:, None])  # (N, 1)
    assert torch.allclose(loss, nll.mean(), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_causal(name):
    x, y = sequence_batch([11, 11, 11, 11])
    model = ready(build(name), x, y)
    idx = torch.randint(4, V, (4, BLOCK_SIZE), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base, _ = model(idx)
        for t in range(BLOCK_SIZE - 1):
            changed = idx.clone()
            changed[:, t + 1] = 4 + (changed[:, t + 1] - 4 + 1) % (V - 4)  # a different symbol
            out, _ = model(changed)
            torch.testing.assert_close(out[:, :t + 1], base[:, :t + 1], rtol=0, atol=1e-6)
            assert not torch.allclose(out[:, t + 1], base[:, t + 1])  # and position t+1 does see it


@pytest.mark.parametrize("name", NAMES)
def test_overfits_one_batch(name):
    x, y = sequence_batch([8, 6, 7, 5])
    # the best a bigram can do on this batch: its conditional entropy of the next token
    # given the current one, which the unsmoothed count bigram attains in closed form
    best_bigram = CountBigram(CountBigramConfig(vocab_size=V, block_size=BLOCK_SIZE, smoothing=0.0))
    bigram_floor = best_bigram.fit([(x, y)])(x, y)[1].item()
    assert bigram_floor < 0.5 * math.log(V)
    model = build(name)
    if getattr(model, "closed_form", False):
        model.fit([(x, y)])  # add-one smoothing (the default) weighs heavily on 30 bigrams
        _, loss = model(x, y)
        assert bigram_floor < loss.item() < math.log(V) - 0.3
        return
    is_bigram = name == "bigram-neural"
    target = bigram_floor + 0.05 if is_bigram else 0.25 * math.log(V)  # context models nearly memorise
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1 if is_bigram else 1e-2)
    for _ in range(200):
        _, loss = model(x, y)
        if loss.item() < target:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < target


@pytest.mark.parametrize("name", NAMES)
def test_generate_stays_in_vocab_and_stops_at_eos(name):
    x, y = sequence_batch([11, 7, 9, 4])
    model = ready(build(name), x, y)
    prompt = torch.full((32, 1), BOS_ID)
    out = generate(model, prompt, max_new_tokens=BLOCK_SIZE - 1, generator=torch.Generator().manual_seed(0))
    assert out.shape[0] == 32 and 1 < out.shape[1] <= BLOCK_SIZE
    assert out.min() >= 0 and out.max() < V
    finished = 0
    for row in out[:, 1:]:
        eos = (row == EOS_ID).nonzero()
        if len(eos):
            finished += 1
            assert (row[eos[0, 0] + 1:] == PAD_ID).all()
    assert finished > 0


@pytest.mark.parametrize("name", NAMES)
def test_eval_output_does_not_depend_on_the_rest_of_the_batch(name):
    x, y = sequence_batch([11, 7, 9, 4, 10, 3])
    model = ready(build(name), x, y)
    with torch.no_grad():
        together, _ = model(x)
        alone, _ = model(x[2:3])
    torch.testing.assert_close(alone, together[2:3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CACHED)
def test_incremental_decoding_equals_recomputation(name):
    x, y = sequence_batch([11, 11, 11])
    model = ready(build(name), x, y)
    with torch.no_grad():
        full, _ = model(x)
        cache = model.init_cache(x.size(0))
        pieces = [model(x[:, :4], cache=cache)[0]]  # a prompt, then one token at a time
        pieces += [model(x[:, t:t + 1], cache=cache)[0] for t in range(4, x.size(1))]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    x, y = sequence_batch([11, 7, 9, 4])
    model = ready(build(name), x, y)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "model_args": asdict(model.config)}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    model_cls, config_cls = MODELS[name]
    torch.manual_seed(123)  # a different init, so nothing matches by accident
    fresh = model_cls(config_cls(**checkpoint["model_args"]))
    fresh.load_state_dict(checkpoint["model"])
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x)[0], model(x)[0])


# --- recurrent cells against torch.nn ------------------------------------------------

@pytest.mark.parametrize("ours, theirs", [(RNNCell, nn.RNNCell), (GRUCell, nn.GRUCell), (LSTMCell, nn.LSTMCell)])
def test_cells_match_torch(ours, theirs):
    torch.manual_seed(0)
    cell, reference = ours(5, 7), theirs(5, 7)
    reference.load_state_dict(cell.state_dict())  # same names, shapes and gate order
    xs = torch.randn(6, 3, 5)  # (T, B, E)
    state = (torch.randn(3, 7), torch.randn(3, 7)) if ours is LSTMCell else torch.randn(3, 7)
    ref_state = state
    for x in xs:
        state, ref_state = cell(x, state), reference(x, ref_state)
        for a, b in zip(state if isinstance(state, tuple) else (state,),
                        ref_state if isinstance(ref_state, tuple) else (ref_state,)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_seqgan_init_draws_every_weight_from_one_normal():
    """init_std > 0 is SeqGAN's generator init: embedding, cell and head N(0, std), one bias per
    gate (bias_hh zero), the start state zero; 0 keeps PyTorch's init (embedding N(0, 1))."""
    from baselines.rnn import LSTMConfig, RecurrentLM

    torch.manual_seed(0)
    model = RecurrentLM(LSTMConfig(vocab_size=5000, block_size=20, n_embd=32, n_embd2=32, init_std=0.1))
    for p in (model.wte.weight, model.cell.weight_ih, model.cell.weight_hh, model.lm_head.weight):
        assert abs(p.std().item() - 0.1) < 0.01 and abs(p.mean().item()) < 0.01
    assert not model.cell.bias_hh.any() and not model.start.any() and model.cell.bias_ih.std() > 0.05
    plain = RecurrentLM(LSTMConfig(vocab_size=5000, block_size=20, n_embd=32, n_embd2=32))
    assert abs(plain.wte.weight.std().item() - 1.0) < 0.05
    with pytest.raises(ValueError, match="init_std"):
        LSTMConfig(init_std=-0.1)


def test_lstm_and_wavenet_fit_makemore_budgets():
    names = dict(vocab_size=30, block_size=16)  # names: 26 letters + 4 specials, longest name 15
    count = {n: sum(p.numel() for p in MODELS[n][0](MODELS[n][1](**names)).parameters())
             for n in ("lstm", "wavenet")}
    assert count["lstm"] <= 40_000
    assert count["wavenet"] <= 80_000


# --- count bigram ----------------------------------------------------------------

def test_count_bigram_nll_equals_counts_by_hand():
    x, y = sequence_batch([5, 3, 6, 2], seed=3)
    k = 0.5
    model = CountBigram(CountBigramConfig(vocab_size=V, block_size=BLOCK_SIZE, smoothing=k))
    model.fit([(x[:2], y[:2]), (x[2:], y[2:])])  # two batches add up
    counts = [[0] * V for _ in range(V)]
    pairs = [(int(a), int(b)) for a, b in zip(x.flatten(), y.flatten()) if b != IGNORE_INDEX]
    for a, b in pairs:
        counts[a][b] += 1
    nll = -sum(math.log((counts[a][b] + k) / (sum(counts[a]) + k * V)) for a, b in pairs) / len(pairs)
    _, loss = model(x, y)
    assert loss.item() == pytest.approx(nll, rel=1e-6)
    assert not list(model.parameters()) and model.closed_form


def test_count_bigram_without_smoothing_is_uniform_on_unseen_rows():
    model = CountBigram(CountBigramConfig(vocab_size=V, block_size=BLOCK_SIZE, smoothing=0.0))
    model.fit([(torch.tensor([[BOS_ID, 5]]), torch.tensor([[5, EOS_ID]]))])
    probs = model(torch.tensor([[BOS_ID, 7]]))[0].softmax(-1)
    assert probs[0, 0, 5] == 1.0  # seen row: all mass on the one successor seen
    torch.testing.assert_close(probs[0, 1], torch.full((V,), 1 / V))  # row 7 never seen


# --- BatchNorm and padding -------------------------------------------------------

def test_masked_batchnorm_without_mask_is_torch_batchnorm():
    ours, theirs = MaskedBatchNorm1d(6), nn.BatchNorm1d(6)
    x = torch.randn(10, 6) * 3 + 1
    for _ in range(2):
        torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)


@pytest.mark.parametrize("name", BATCHNORM)
def test_batchnorm_statistics_ignore_padding(name):
    """Right-padding a batch further does not change training-mode outputs or running stats."""
    x, y = sequence_batch([8, 5, 7, 3])
    x_long = torch.cat([x, torch.full((4, 3), PAD_ID)], dim=1)
    y_long = torch.cat([y, torch.full((4, 3), IGNORE_INDEX)], dim=1)
    model, twin = build(name), build(name)
    short_logits, short_loss = model(x, y)
    long_logits, long_loss = twin(x_long, y_long)
    torch.testing.assert_close(long_logits[:, :x.size(1)], short_logits)
    torch.testing.assert_close(long_loss, short_loss)
    for (key, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, msg=key)


def test_mlp_sees_exactly_its_context():
    model = MLP(MLPConfig(vocab_size=V, block_size=BLOCK_SIZE, context=3)).eval()
    idx = torch.randint(4, V, (2, BLOCK_SIZE), generator=torch.Generator().manual_seed(0))
    changed = idx.clone()
    changed[:, 2] = 4 + (changed[:, 2] - 4 + 1) % (V - 4)
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    assert not torch.allclose(a[:, 4], b[:, 4])        # token 2 is in the window of position 4
    torch.testing.assert_close(a[:, 5:], b[:, 5:], rtol=0, atol=0)  # and not of position 5 on


def test_wavenet_equals_the_lecture_network_on_each_window():
    x, y = sequence_batch([11, 7, 9, 4])
    model = ready(WaveNet(WaveNetConfig(vocab_size=V, block_size=BLOCK_SIZE, n_embd=8, n_hidden=32)), x, y)
    B, T = x.shape
    with torch.no_grad():
        logits, _ = model(x)
        for b in range(B):
            for t in range(T):
                window = [model.blank] * max(0, 7 - t) + x[b, max(0, t - 7):t + 1].tolist()  # 8 tokens
                h = model.wte(torch.tensor([window]))  # (1, 8, C)
                for level in model.levels:  # the lecture: view as pairs, Linear, BatchNorm, Tanh
                    h = h.view(1, h.size(1) // 2, -1) if h.size(1) > 2 else h.view(1, -1)
                    bn = level.bn
                    h = torch.tanh((level.linear(h) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
                                   * bn.weight + bn.bias)
                torch.testing.assert_close(model.lm_head(h)[0], logits[b, t])


def test_wavenet_context_must_be_a_power_of_two():
    with pytest.raises(ValueError):
        WaveNetConfig(context=12)
    with pytest.raises(ValueError):
        WaveNetConfig(context=4)
