"""GPT-2 specifics beyond the registry-wide properties in test_baselines.py."""

import io
import math

import pytest
import torch

from baselines.gpt2 import GPT, GPTConfig, PRESETS
from baselines.sampling import filter_logits, generate
from datasets.tokenizers import BOS_ID


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=2, n_embd=32, **kw))


def test_loss_at_init_is_ln_vocab():
    m = tiny()
    x, y = torch.randint(50, (8, 24)), torch.randint(50, (8, 24))
    _, loss = m(x, y)
    assert abs(loss.item() - math.log(50)) < 0.1  # N(0, 0.02) init: near-uniform predictions


def test_gpt2_parameter_names_and_tying():
    names = dict(tiny().named_parameters())
    for n in ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
              "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
              "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.bias", "transformer.ln_f.weight"]:
        assert n in names
    m = tiny()
    assert m.lm_head.weight is m.transformer.wte.weight


def test_residual_projection_init_is_scaled():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=8, n_head=4, n_embd=256))
    std = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)
    assert m.transformer.h[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_gpt2_small_preset_size():
    cfg = GPTConfig(vocab_size=50257, block_size=1024, **PRESETS["gpt2"])
    with torch.device("meta"):
        m = GPT(cfg)
    assert m.num_params(non_embedding=False) == 124_439_808  # GPT-2 small, as published


def test_kv_cache_prefill_and_step_equal_full_recompute():
    m = tiny().eval()
    x = torch.randint(50, (3, 20))
    full, _ = m(x)
    cache = m.init_cache(3)
    a, _ = m(x[:, :7], cache=cache)   # prefill several tokens at once
    parts = [a]
    for t in range(7, 20):
        b, _ = m(x[:, t:t + 1], cache=cache)
        parts.append(b)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_cached_and_uncached_generation_agree_for_one_seed():
    m = tiny().eval()
    start = torch.full((4, 1), BOS_ID)
    a = generate(m, start, 20, use_cache=True, generator=torch.Generator().manual_seed(3), eos_id=None)
    b = generate(m, start, 20, use_cache=False, generator=torch.Generator().manual_seed(3), eos_id=None)
    assert torch.equal(a, b)


def test_context_overflow_is_an_error():
    m = tiny()
    with pytest.raises(ValueError, match="exceeds block_size"):
        m(torch.zeros(1, 25, dtype=torch.long))


@pytest.mark.parametrize("kw, match", [(dict(n_embd=30, n_head=4), "divisible"), (dict(n_layer=0), "positive"),
                                       (dict(dropout=1.5), "dropout")])
def test_invalid_config_values(kw, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kw)


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    k = filter_logits(logits, top_k=2)
    assert torch.isinf(k[0, 2:]).all() and torch.isfinite(k[0, :2]).all()
    p = filter_logits(logits, top_p=0.7)  # 0.5 + 0.3 reaches 0.7: keep the first two
    assert torch.isfinite(p[0, :2]).all() and torch.isinf(p[0, 2:]).all()
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0)


def test_checkpoint_round_trip_identical_logits():
    m = tiny(dropout=0.1).eval()
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = GPT(m.config)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    m2.eval()
    x = torch.randint(50, (2, 24))
    assert torch.equal(m(x)[0], m2(x)[0])
