"""Metrics: parity of BLEU and self-BLEU with nltk, and hand-computed small cases."""

import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu as nltk_sentence_bleu

from datasets import oracle as oracle_mod
from experiments.scoring.metrics import (
    BleuReference,
    bleu,
    distinct_n,
    length_distribution,
    length_histogram,
    length_stats,
    length_tv_distance,
    numbers_metrics,
    oracle_nll,
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


def oracle_nll_by_hand(o, ids):
    """Summed NLL (nats) of one sequence of oracle ids under the oracle, one token at a time:
    its LSTM cell written out (PyTorch's gate order i, f, g, o), fed the start token and then
    each token in turn, with log_softmax over the head's logits for the next one."""
    W_ih, W_hh = o.lstm.weight_ih_l0.double(), o.lstm.weight_hh_l0.double()
    b = (o.lstm.bias_ih_l0 + o.lstm.bias_hh_l0).double()
    E, W_out, b_out = o.emb.weight.double(), o.head.weight.double(), o.head.bias.double()
    h = c = torch.zeros(oracle_mod.HIDDEN, dtype=torch.float64)
    prev, total = oracle_mod.START_TOKEN, 0.0
    for tok in ids:
        i, f, g, out = (W_ih @ E[prev] + W_hh @ h + b).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(out) * torch.tanh(c)
        total -= F.log_softmax(W_out @ h + b_out, dim=-1)[tok].item()
        prev = tok
    return total


def test_oracle_nll_matches_a_step_by_step_oracle():
    o = oracle_mod.Oracle()
    full = o.sample(3, seed=11).tolist()  # typical sequences, where the oracle is peaked
    gen = torch.Generator().manual_seed(0)
    seqs = [
        full[0],                                                    # all SEQ_LEN tokens
        full[1][:7],                                                # ended early: 7 tokens
        [4999],                                                     # one token, the last id
        torch.randint(oracle_mod.VOCAB, (13,), generator=gen).tolist(),  # uniform noise, 13 tokens
        full[2] + [5, 6, 7],                                        # past the horizon: first SEQ_LEN scored
    ]
    samples = [[str(i) for i in s] for s in seqs] + [["12", "<unk>"], []]  # two that cannot be scored
    scored = [s[:oracle_mod.SEQ_LEN] for s in seqs]
    n_tokens = sum(len(s) for s in scored)
    assert n_tokens == 20 + 7 + 1 + 13 + 20
    want = sum(oracle_nll_by_hand(o, s) for s in scored) / n_tokens  # mean per scored token
    for batch_size in (2, 256):  # over several batches and in one
        got = oracle_nll(samples, o, seq_len=oracle_mod.SEQ_LEN, vocab_size=oracle_mod.VOCAB, batch_size=batch_size)
        assert got["scored"] == 5 and got["invalid"] == pytest.approx(2 / 7)
        assert got["nll"] == pytest.approx(want, rel=1e-5)
    # each sequence alone: the per-token mean of its own tokens
    for s in scored:
        alone = oracle_nll([[str(i) for i in s]], o, seq_len=oracle_mod.SEQ_LEN, vocab_size=oracle_mod.VOCAB)
        assert alone["nll"] == pytest.approx(oracle_nll_by_hand(o, s) / len(s), rel=1e-5)
