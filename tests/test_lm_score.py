"""LM score and reverse LM score: their definitions and sanity on numbers with tiny scorer LMs
(canonical text, byte-level BPE, bits per byte; the oracles' fixed ids in nats per token)."""

import dataclasses
import math
import random

import pytest
import torch
import torch.nn.functional as F

from datasets import build_tokenizer, load_corpus
from datasets.corpora import Corpus
from datasets.tokenizers import BOS_ID, EOS_ID
from experiments.scoring.lm_score import (LMScorer, ScorerConfig, ScorerText, fit_gpt2, lm_score, needed_block_size,
                                          reverse_lm_score, texts_nll)
from experiments.scoring.nll import bits_per_byte
from experiments.scoring.samples import SampleTokenizer

TINY = ScorerConfig(n_layer=1, n_head=2, n_embd=32, steps=120, val_interval=40, lr=1e-2, min_lr=1e-3, vocab_size=300)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def numbers():
    corpus = load_corpus("numbers")
    return corpus, ScorerText(corpus, SampleTokenizer(build_tokenizer(corpus)), TINY)


@pytest.fixture(scope="module")
def scorer(numbers):
    return LMScorer(*numbers, TINY, CPU)


def shuffled(texts, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.sample(t.split(), len(t.split()))) for t in texts]


def uniform_strings(texts, words, seed=0):
    """As many strings as texts, of the same lengths, of words drawn uniformly from `words`."""
    rng = random.Random(seed)
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
    corpus, text = numbers
    words = sorted({w for t in corpus.train for w in t.split()})
    real = lm_score(corpus.test[:300], scorer)
    scrambled = lm_score(shuffled(corpus.test[:300]), scorer)
    uniform = lm_score(uniform_strings(corpus.test[:300], words), scorer)
    assert text.unit == "bits per byte" and real < 1.0  # number names are very predictable per byte
    assert real + 0.1 < scrambled  # word order matters
    assert real + 0.3 < uniform  # the scorer puts its mass on number names, not on noise
    assert scorer(corpus.test[:300]) == real  # deterministic, and the object is the function


def test_bits_per_byte_by_hand():
    texts = ["ab", "été"]  # 2 and 5 UTF-8 bytes, + 1 each for the end
    assert bits_per_byte(9 * math.log(2), texts) == pytest.approx(9 / 9)
    assert bits_per_byte(0.0, texts) == 0.0


def test_lm_score_is_the_summed_nll_in_bits_per_byte_eos_included(numbers, scorer):
    corpus, text = numbers
    tok = text.tokenizer
    longest = max(corpus.train, key=len)
    texts = [corpus.test[0], "one", corpus.test[1], longest, "<unk> one", longest + " one"]
    parts = [nll_by_hand(scorer.model, tok, t) for t in texts]
    assert [n for _, n in parts] == [len(tok.encode(t)) + 1 for t in texts]
    n_bytes = sum(len(t.encode()) + 1 for t in texts)
    want = sum(s for s, _ in parts) / math.log(2) / n_bytes  # pooled over bytes, not over texts
    assert lm_score(texts, scorer) == pytest.approx(want, rel=1e-5)
    # room for samples spelt in more pieces than any real line
    assert 2 * needed_block_size(tok, corpus.train, corpus.val, corpus.test) + 1 == scorer.model.block_size
    # longer still: scored in windows, every token once (test_window_rows_...), never truncated or refused
    assert math.isfinite(lm_score([" ".join(corpus.train[:20])], scorer))


def test_every_text_is_judged_in_one_canonical_form():
    # a word corpus: raw real lines ("Don't") and a word model's detokenised samples ("don ' t")
    # are the same text to the judge, lowercased like the data
    lines = ["Don't stop, it's fine.", "We can't go.", "I'm here!", "Do it now."] * 30
    corpus = Corpus("mine", "word", "sequence", lines, lines[:20], lines[:20], lowercase=True)
    text = ScorerText(corpus, SampleTokenizer(build_tokenizer(corpus)), TINY)
    assert text.canonical("Don't stop, it's fine.") == "don ' t stop , it ' s fine ." == text.canonical(
        "don ' t stop , it ' s fine .")
    assert text.canonical("a <unk> b") == "a <unk> b"  # an unknown word stays one visible symbol
    cfg = dataclasses.replace(TINY, steps=20, val_interval=10)
    scorer = LMScorer(corpus, text, cfg, CPU)
    assert lm_score(["Don't stop, it's fine."], scorer) == lm_score(["don ' t stop , it ' s fine ."], scorer)
    chars = Corpus("names", "char", "sequence", ["Anna", "bob"] * 20, ["anna"] * 4, ["bob"] * 4, lowercase=True)
    assert ScorerText(chars, SampleTokenizer(build_tokenizer(chars)), TINY).canonical("Anna Bo") == "anna bo"


def test_the_oracles_keep_their_fixed_ids_in_nats_per_token(monkeypatch):
    from datasets import oracle
    monkeypatch.setattr(oracle, "SIZES", {"train": 30, "val": 5, "test": 5})
    corpus = load_corpus("oracle")
    source = SampleTokenizer(build_tokenizer(corpus))
    text = ScorerText(corpus, source, TINY)
    assert text.fixed and text.unit == "nats per token" and text.tokenizer is source
    assert text.canonical(corpus.train[0]) == corpus.train[0]


def test_reverse_lm_score_is_the_test_nll_of_an_lm_fitted_on_the_samples(numbers):
    corpus, text = numbers
    tok = text.tokenizer
    cfg = dataclasses.replace(TINY, steps=30, val_interval=10)
    samples = corpus.train[:300]
    # the definition spelled out: fitted on the samples, selected on real val, scored on real test
    model = fit_gpt2(samples, corpus.val, tok, needed_block_size(tok, samples, corpus.val, corpus.test), cfg, CPU)
    on_test, on_val = (text.score(model, getattr(corpus, s), CPU) for s in ("test", "val"))
    assert on_test != on_val  # scoring the wrong split would show
    assert on_test == pytest.approx(bits_per_byte(texts_nll(model, tok, corpus.test, CPU)["nll"] *
                                                  texts_nll(model, tok, corpus.test, CPU)["tokens"], corpus.test))
    assert reverse_lm_score(samples, corpus, text, cfg, CPU) == pytest.approx(on_test, rel=1e-9)
    # reverse_steps gives the reverse LM its own budget (the LM-score GPT-2 keeps steps)
    assert reverse_lm_score(samples, corpus, text, dataclasses.replace(cfg, steps=500, reverse_steps=30), CPU) == \
        pytest.approx(on_test, rel=1e-9)


def test_reverse_lm_score_of_the_training_set_is_the_scorer_test_nll(numbers, scorer):
    corpus, text = numbers
    # trained on the real training split, selected on val, scored on test: what the LM scorer
    # itself scores on test (the two differ only in context length, hence in init)
    own_test = text.score(scorer.model, corpus.test, CPU)
    reverse = reverse_lm_score(corpus.train, corpus, text, TINY, CPU)
    assert reverse == pytest.approx(own_test, abs=0.01)
    collapsed = reverse_lm_score([corpus.train[0]] * 500, corpus, text, TINY, CPU)
    assert collapsed > reverse + 0.3  # one sentence repeated explains little of the test set


def test_lm_score_is_reproducible_from_the_scorer_seed(numbers):
    corpus, text = numbers
    cfg = dataclasses.replace(TINY, steps=30, val_interval=10)
    texts = corpus.test[:200]
    torch.manual_seed(1)
    a = LMScorer(corpus, text, cfg, CPU)
    torch.manual_seed(2)  # whatever the caller's global RNG state: the scorer's own seed decides
    b = LMScorer(corpus, text, cfg, CPU)
    other = LMScorer(corpus, text, dataclasses.replace(cfg, train_seed=1), CPU)
    assert lm_score(texts, a) == lm_score(texts, b)  # bit for bit
    assert lm_score(texts, other) != lm_score(texts, a)  # the seed is what fixes it
    again = LMScorer(corpus, text, cfg, CPU, state=a.state_dict())  # a cached fit, read back
    assert lm_score(texts, again) == lm_score(texts, a)


def test_fit_is_seeded_and_leaves_the_global_rng_alone(numbers):
    corpus, text = numbers
    tok = text.tokenizer
    cfg = ScorerConfig(n_layer=1, n_head=2, n_embd=16, steps=5, val_interval=5)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = fit_gpt2(corpus.train[:50], corpus.val[:20], tok, 16, cfg, CPU)
    assert torch.rand(1) == before
    b = fit_gpt2(corpus.train[:50], corpus.val[:20], tok, 16, cfg, CPU)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("n,context", [(5, 4), (9, 4), (10, 5), (31, 8), (7, 2)])
def test_window_rows_score_every_token_once_with_half_a_context(n, context):
    from datasets.tokenizers import IGNORE_INDEX
    from experiments.scoring.lm_score import window_rows
    ids = list(range(10, 10 + n))
    x_all, y_all = [BOS_ID] + ids, ids + [EOS_ID]
    scored = []
    for x, y in window_rows(ids, context):
        assert len(x) == len(y) == context
        start = x_all.index(int(x[0])) if int(x[0]) != BOS_ID else 0
        assert x.tolist() == x_all[start:start + context]
        for j, t in enumerate(y.tolist()):
            if t != IGNORE_INDEX:
                assert t == y_all[start + j]
                assert start == 0 or j >= context // 2  # at least half a context before it
                scored.append(start + j)
    assert scored == list(range(len(y_all)))  # every target once, in order


def test_texts_longer_than_the_scorer_are_scored_in_windows(scorer):
    """A sample longer than the LM-score GPT-2's context (a byte-level model's noise) is scored,
    not refused: its NLL is finite and counts every one of its tokens."""
    tok = scorer.text.tokenizer
    long_text = " ".join(["seven"] * (scorer.model.block_size + 5))
    short = "seven hundred"
    both = texts_nll(scorer.model, tok, [short, long_text], CPU)
    alone = texts_nll(scorer.model, tok, [short], CPU)
    assert both["tokens"] == alone["tokens"] + len(tok.encode(long_text)) + 1
    assert math.isfinite(both["nll"])
