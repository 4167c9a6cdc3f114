"""Metrics: parity of BLEU and self-BLEU with nltk, and hand-computed small cases."""

import math
import random
import warnings

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu as nltk_sentence_bleu

from experiments.scoring.metrics import (
    BleuReference,
    bleu,
    distinct_n,
    length_distribution,
    length_histogram,
    length_stats,
    length_tv_distance,
    numbers_metrics,
    self_bleu,
)

NS = (2, 3, 4, 5)
METHOD1 = SmoothingFunction().method1


def nltk_bleu(refs, hyp, n):
    return nltk_sentence_bleu(refs, hyp, weights=(1 / n,) * n, smoothing_function=METHOD1)


def nltk_self_bleu(samples, n):
    """The definition, spelled out: each sample against every other index."""
    scores = [nltk_bleu(samples[:j] + samples[j + 1:], s, n) for j, s in enumerate(samples)]
    return sum(scores) / len(scores)


def random_sentence(rng, vocab, lo, hi):
    return [rng.choice(vocab) for _ in range(rng.randint(lo, hi))]


def random_case(rng):
    """References and a hypothesis over a small vocabulary, biased toward edge cases."""
    vocab = [f"w{i}" for i in range(rng.randint(1, 8))]  # small: many repeats and matches
    refs = [random_sentence(rng, vocab, 0, 15) for _ in range(rng.randint(1, 20))]
    kind = rng.random()
    if kind < 0.1:
        hyp = []
    elif kind < 0.25:
        hyp = list(rng.choice(refs))  # identical to a reference (possibly empty)
    elif kind < 0.4:
        hyp = random_sentence(rng, vocab, 1, 4)  # shorter than most n
    elif kind < 0.5:
        hyp = [rng.choice(vocab)] * rng.randint(1, 12)  # one repeated n-gram
    else:
        hyp = random_sentence(rng, vocab, 0, 12)
    return refs, hyp


def test_sentence_bleu_matches_nltk_randomised():
    rng = random.Random(1234)
    for _ in range(300):
        refs, hyp = random_case(rng)
        table = BleuReference(refs, max_n=5)
        for n in NS:
            assert table.sentence_bleu(hyp, n) == pytest.approx(nltk_bleu(refs, hyp, n), abs=1e-9), (refs, hyp, n)


def test_corpus_scores_are_the_mean_of_nltk_sentence_bleu():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(6)]
    refs = [random_sentence(rng, vocab, 1, 12) for _ in range(15)]
    hyps = [random_sentence(rng, vocab, 0, 12) for _ in range(25)]
    got = bleu(hyps, refs, ns=NS)
    for n in NS:
        want = sum(nltk_bleu(refs, h, n) for h in hyps) / len(hyps)
        assert got[n] == pytest.approx(want, abs=1e-9)
    # the class and the convenience function agree, and all orders share one pass
    assert BleuReference(refs).corpus_scores(hyps, NS) == got


def test_bleu_edge_cases():
    refs = [["a", "b", "c", "d"], ["a", "b"]]
    table = BleuReference(refs)
    assert table.sentence_bleu([], 2) == 0.0  # empty hypothesis
    assert table.sentence_bleu(["z", "z"], 2) == 0.0  # no unigram matches
    assert table.sentence_bleu(["a", "b", "c", "d"], 4) == pytest.approx(1.0)
    # shorter than n: nltk floors the denominator at 1, so p_3 = 0.1 / 1 after method1
    assert table.sentence_bleu(["a", "b"], 3) == pytest.approx((1 * 1 * 0.1) ** (1 / 3))
    # closest-length ties go to the shorter reference: len 3 is 1 from both 2 and 4 -> r=2, BP=1
    assert table.sentence_bleu(["a", "b", "c"], 2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        table.sentence_bleu(["a"], 6)  # beyond the table's max_n
    with pytest.raises(TypeError):
        table.sentence_bleu("a b", 2)  # a string is not a token list
    with pytest.raises(ValueError):
        BleuReference([])


def test_self_bleu_matches_naive_nltk_loop():
    rng = random.Random(99)
    for case in range(40):
        vocab = [f"w{i}" for i in range(rng.randint(1, 6))]
        samples = [random_sentence(rng, vocab, 0, 10) for _ in range(rng.randint(2, 12))]
        if case % 4 == 0:  # exact duplicates: the other copy is a legitimate reference
            samples.append(list(rng.choice(samples)))
        got = self_bleu(samples, ns=NS)
        for n in NS:
            assert got[n] == pytest.approx(nltk_self_bleu(samples, n), abs=1e-9), (samples, n)


def test_self_bleu_excludes_the_hypothesis_itself():
    samples = [["the", "cat", "sat", "down"], ["a", "dog", "ran", "off"]]
    got = self_bleu(samples, ns=(2,))
    include_self = sum(nltk_bleu(samples, s, 2) for s in samples) / 2
    assert include_self == pytest.approx(1.0)  # the leaky version sees a perfect match
    assert got[2] == 0.0  # no shared unigram with the other sample
    # an identical other copy does count
    assert self_bleu([samples[0], list(samples[0])], ns=(2,))[2] == pytest.approx(1.0)


def test_self_bleu_max_samples_and_errors():
    samples = [["a", "b"], ["a", "c"], ["x", "y"], ["a", "b", "c"]]
    assert self_bleu(samples, ns=(2,), max_samples=3) == self_bleu(samples[:3], ns=(2,))
    with pytest.raises(ValueError):
        self_bleu([["a"]])


def test_no_global_warning_filters_changed():
    before = list(warnings.filters)
    BleuReference([["a"]]).sentence_bleu(["b"], 2)
    self_bleu([["a"], ["b"]])
    assert warnings.filters == before


def test_distinct_n_hand_cases():
    samples = [["a", "b", "a", "b"], ["a", "b"]]
    assert distinct_n(samples, 1) == 2 / 6
    assert distinct_n(samples, 2) == 2 / 4  # (a,b) x3, (b,a) x1; none across samples
    assert distinct_n(samples, 3) == 2 / 2
    assert distinct_n(samples, 5) == 0.0  # no 5-grams at all
    assert distinct_n([], 1) == 0.0


def test_length_metrics():
    samples = [["a"], ["a", "b"], ["a", "b"], ["a", "b", "c", "d"]]
    stats = length_stats(samples)
    assert stats == {"n": 4, "mean": 2.25, "std": pytest.approx(math.sqrt(1.1875)), "min": 1, "max": 4}
    assert length_distribution(samples) == {1: 0.25, 2: 0.5, 4: 0.25}
    assert length_histogram(samples) == [0.0, 0.25, 0.5, 0.0, 0.25]
    assert length_histogram(samples, max_len=2) == [0.0, 0.25, 0.75]  # overflow in the last bin
    data = [["a"], ["a", "b", "c"]]
    # p = {1: .25, 2: .5, 4: .25}, q = {1: .5, 3: .5}: 0.5 * (.25 + .5 + .5 + .25)
    assert length_tv_distance(samples, data) == pytest.approx(0.75)
    assert length_tv_distance(samples, samples) == 0.0


def test_numbers_metrics_hand_case():
    names = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}

    def parse(text):
        return names.get(text)

    train = {"one", "two", "three"}
    test = {"four", "five"}
    samples = ["one", "one", "four", "bogus", "two", "four", "onee", "one"]
    got = numbers_metrics(samples, train, test, parse)
    assert got == {
        "n_samples": 8,
        "n_valid": 6,  # one x3, four x2, two
        "precision": 6 / 8,
        "distinct_valid": 3,  # one, two, four
        "novelty": 1 / 3,  # four is the only distinct valid sample outside train
        "recall": 1 / 2,  # four produced, five not
    }
