"""LM score and reverse LM score: sanity on numbers with tiny scorer LMs."""

import random

import pytest
import torch

from datasets import build_tokenizer, load_corpus
from experiments.scoring.lm_score import LMScorer, ScorerConfig, fit_gpt2, lm_score, needed_block_size, reverse_lm_score
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


def test_lm_score_prefers_real_sentences_to_scrambled_ones(numbers, scorer):
    corpus, _ = numbers
    real = lm_score(corpus.test[:300], scorer)
    scrambled = lm_score(shuffled(corpus.test[:300]), scorer)
    assert real < scrambled
    assert real < 0.7 * torch.log(torch.tensor(33.0)).item()  # well below the uniform ln(vocab)
    assert scorer(corpus.test[:300]) == real  # deterministic, and the object is the function


def test_lm_score_fits_samples_that_never_ended(numbers, scorer):
    corpus, tok = numbers
    longest = max(corpus.train, key=lambda t: len(t.split()))
    no_eos = longest + " one"  # one token longer than any sentence: what a sampler writes without <eos>
    assert needed_block_size(tok, [no_eos]) == scorer.model.block_size
    assert lm_score([no_eos, corpus.test[0]], scorer) > 0


def test_reverse_lm_score_penalises_a_collapsed_sample_set(numbers):
    corpus, tok = numbers
    diverse = reverse_lm_score(corpus.train[:500], corpus, tok, TINY, CPU)
    collapsed = reverse_lm_score([corpus.train[0]] * 500, corpus, tok, TINY, CPU)
    assert diverse < collapsed


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
