"""LM score and reverse LM score: their definitions and sanity on numbers with tiny scorer LMs."""

import dataclasses
import math
import random

import pytest
import torch
import torch.nn.functional as F

from datasets import build_tokenizer, load_corpus
from datasets.tokenizers import BOS_ID, EOS_ID
from experiments.scoring.lm_score import (LMScorer, ScorerConfig, fit_gpt2, lm_score, needed_block_size,
                                          reverse_lm_score, texts_nll)
from experiments.scoring.samples import SampleTokenizer

TINY = ScorerConfig(n_layer=1, n_head=2, n_embd=32, steps=120, val_interval=40, lr=1e-2, min_lr=1e-3)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def numbers():
    corpus = load_corpus("numbers")
    return corpus, SampleTokenizer(build_tokenizer(corpus))


@pytest.fixture(scope="module")
def scorer(numbers):
    return LMScorer(*numbers, TINY, CPU)


def shuffled(texts, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.sample(t.split(), len(t.split()))) for t in texts]


def uniform_strings(texts, tok, seed=0):
    """As many strings as texts, of the same lengths, of words drawn uniformly from the vocabulary."""
    rng = random.Random(seed)
    words = [w for w in tok.itos if not w.startswith("<")]
    return [" ".join(rng.choice(words) for _ in t.split()) for t in texts]


def nll_by_hand(model, tok, text):
    """(summed NLL, tokens) of one text under a GPT-2, one unpadded row: <bos> + ids in,
    ids + <eos> out, -log_softmax of each target."""
    ids = tok.encode(text)
    x, y = torch.tensor([[BOS_ID] + ids]), torch.tensor([ids + [EOS_ID]])
    with torch.no_grad():
        logits, _ = model(x)
    return -F.log_softmax(logits.double(), -1).gather(-1, y[..., None]).sum().item(), len(ids) + 1


def test_lm_score_prefers_real_sentences_to_scrambled_and_random_ones(numbers, scorer):
    corpus, tok = numbers
    log_v = math.log(tok.vocab_size)
    real = lm_score(corpus.test[:300], scorer)
    scrambled = lm_score(shuffled(corpus.test[:300]), scorer)
    uniform = lm_score(uniform_strings(corpus.test[:300], tok), scorer)
    assert real < 0.7 * log_v  # well below the uniform ln(vocab)
    assert real + 0.5 < scrambled  # word order matters
    assert real + 2 < uniform and uniform > log_v  # the scorer puts its mass on number names, not on noise
    assert scorer(corpus.test[:300]) == real  # deterministic, and the object is the function


def test_lm_score_is_the_mean_nll_per_token_eos_included(numbers, scorer):
    corpus, tok = numbers
    longest = max(corpus.train, key=lambda t: len(t.split()))
    no_eos = longest + " one"  # one token longer than any sentence: what a sampler writes without <eos>
    assert needed_block_size(tok, [no_eos]) == scorer.model.block_size  # it fits, exactly
    texts = [no_eos, corpus.test[0], "one", corpus.test[1], longest, "<unk> one"]
    parts = [nll_by_hand(scorer.model, tok, t) for t in texts]
    assert [n for _, n in parts] == [len(tok.split(t)) + 1 for t in texts]
    want = sum(s for s, _ in parts) / sum(n for _, n in parts)  # pooled over tokens, not over texts
    assert lm_score(texts, scorer) == pytest.approx(want, rel=1e-5)
    per_text = sum(s / n for s, n in parts) / len(parts)
    assert abs(want - per_text) > 1e-3  # the two poolings differ on this set
    with pytest.raises(ValueError, match="block_size"):
        lm_score([no_eos + " one"], scorer)  # longer still: refused, never truncated


def test_reverse_lm_score_is_the_test_nll_of_an_lm_fitted_on_the_samples(numbers):
    corpus, tok = numbers
    cfg = dataclasses.replace(TINY, steps=30, val_interval=10)
    samples = corpus.train[:300]
    # the definition spelled out: fitted on the samples, selected on real val, scored on real test
    model = fit_gpt2(samples, corpus.val, tok, needed_block_size(tok, samples, corpus.val, corpus.test), cfg, CPU)
    on_test, on_val = (texts_nll(model, tok, getattr(corpus, s), CPU)["nll"] for s in ("test", "val"))
    assert on_test != on_val  # scoring the wrong split would show
    assert reverse_lm_score(samples, corpus, tok, cfg, CPU) == pytest.approx(on_test, rel=1e-9)
    # reverse_steps gives the reverse LM its own budget (the LM-score GPT-2 keeps steps)
    assert reverse_lm_score(samples, corpus, tok, dataclasses.replace(cfg, steps=500, reverse_steps=30), CPU) == \
        pytest.approx(on_test, rel=1e-9)


def test_reverse_lm_score_of_the_training_set_is_the_scorer_test_nll(numbers, scorer):
    corpus, tok = numbers
    # trained on the real training split, selected on val, scored on test: what the LM scorer
    # itself scores on test (the two differ only in context length, hence in init)
    own_test = texts_nll(scorer.model, tok, corpus.test, CPU)["nll"]
    reverse = reverse_lm_score(corpus.train, corpus, tok, TINY, CPU)
    assert reverse == pytest.approx(own_test, abs=0.01)
    collapsed = reverse_lm_score([corpus.train[0]] * 500, corpus, tok, TINY, CPU)
    assert collapsed > reverse + 1  # one sentence repeated explains little of the test set


def test_lm_score_is_reproducible_from_the_scorer_seed(numbers):
    corpus, tok = numbers
    cfg = dataclasses.replace(TINY, steps=30, val_interval=10)
    texts = corpus.test[:200]
    torch.manual_seed(1)
    a = LMScorer(corpus, tok, cfg, CPU)
    torch.manual_seed(2)  # whatever the caller's global RNG state: the scorer's own seed decides
    b = LMScorer(corpus, tok, cfg, CPU)
    other = LMScorer(corpus, tok, dataclasses.replace(cfg, train_seed=1), CPU)
    assert lm_score(texts, a) == lm_score(texts, b)  # bit for bit
    assert lm_score(texts, other) != lm_score(texts, a)  # the seed is what fixes it


def test_fit_is_seeded_and_leaves_the_global_rng_alone(numbers):
    corpus, tok = numbers
    cfg = ScorerConfig(n_layer=1, n_head=2, n_embd=16, steps=5, val_interval=5)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = fit_gpt2(corpus.train[:50], corpus.val[:20], tok, 8, cfg, CPU)
    assert torch.rand(1) == before
    b = fit_gpt2(corpus.train[:50], corpus.val[:20], tok, 8, cfg, CPU)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
