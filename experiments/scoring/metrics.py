"""Text-generation metrics: BLEU, self-BLEU, distinct-n, length statistics, number names.

All metrics are pure functions of samples and references (nothing is cached between
calls). Sequences are lists of tokens; tokenisation is the caller's business.

- BLEU (Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine
  translation") in the text-GAN protocol of Texygen (Zhu et al. 2018, "Texygen: A
  Benchmarking Platform for Text Generation Models"), also used by TextGAN-PyTorch: every
  hypothesis is scored with *sentence* BLEU-n against the whole reference set, uniform
  weights (1/n, ..., 1/n), nltk's `SmoothingFunction().method1`, and the scores are
  averaged over hypotheses. The result equals, to the last bit in our tests, the loop

      mean(sentence_bleu(references, hyp, (1/n,) * n,
                         smoothing_function=SmoothingFunction().method1) for hyp in hyps)

  but the reference side (max n-gram counts, sorted lengths) is built once, so each
  hypothesis costs O(len(hyp)) instead of O(total reference length).
- Self-BLEU (Zhu et al. 2018): each sample is scored against all *other* samples of the
  same set, never against itself. Texygen's fast path and several re-implementations
  leak the hypothesis into its own references or cache a stale reference set; Caccia et
  al. 2020 ("Language GANs Falling Short") argue that quality (BLEU) and diversity
  (self-BLEU) must be read together, which only works if both are computed correctly.
- distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
  Conversation Models"): unique n-grams over total n-grams in all samples.
- Length statistics, and the total-variation distance between the length distribution
  of samples and of data.
- Number-name metrics (precision, novelty, recall) for the `numbers` dataset, with the
  grammar checker passed in as a function.
- NLL-oracle (Yu et al. 2017, SeqGAN) for the `oracle` and `seqgan_oracle` datasets, with the
  oracle passed in.

Metrics that need a trained language model (LM score, reverse LM score) live in
experiments/scoring/lm_score.py; NLL-test (and its padding-included and latent forms) in
experiments/scoring/nll.py.

nltk's sentence BLEU, as reproduced here (nltk 3.10, `nltk/translate/bleu_score.py`):
  p_k = sum over hypothesis k-grams g of min(count_hyp(g), max over refs count_ref(g))
        divided by max(1, number of hypothesis k-grams)     (the floor of 1 matters when
        the hypothesis is shorter than k: p_k = 0 / 1)
  if p_1 has numerator 0 (no unigram matches; always so for an empty hypothesis): 0
  method1: a precision whose numerator is 0 becomes epsilon / denominator (epsilon 0.1)
  BP = 1 if hyp_len > r else exp(1 - r / hyp_len), r = the reference length closest to
       hyp_len, ties going to the shorter reference
  BLEU-n = BP * exp(fsum((1/n) * log p_k for k = 1..n))
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from typing import Callable, Iterable, Sequence

# nltk's SmoothingFunction() default epsilon, the count method1 adds to zero numerators
_EPSILON = 0.1
DEFAULT_NS = (2, 3, 4, 5)

Tokens = Sequence[str]


# ---------------------------------------------------------------------------------------
# shared BLEU machinery


def _check_tokens(seq, what: str) -> None:
    # a str is a sequence too, and would silently be scored character by character
    if isinstance(seq, str):
        raise TypeError(f"{what} must be a list of tokens, got a str: {seq[:40]!r}")


def _check_ns(ns: Iterable[int], max_n: int | None = None) -> tuple[int, ...]:
    ns = tuple(ns)
    if not ns:
        raise ValueError("ns must name at least one n-gram order")
    for n in ns:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n-gram orders must be positive ints, got {n!r}")
        if max_n is not None and n > max_n:
            raise ValueError(f"BLEU-{n} asked for, but the reference table holds orders up to {max_n}")
    return ns


def _ngram_counts(tokens: Tokens, max_n: int) -> list[Counter]:
    """counts[k] = Counter of the (k+1)-grams of tokens, as tuples (like nltk.util.ngrams)."""
    # zip of shifted slices yields nothing when len(tokens) < n, i.e. an empty Counter,
    # which is what nltk's modified_precision uses for a too-short sequence
    return [Counter(zip(*(tokens[i:] for i in range(n)))) for n in range(1, max_n + 1)]


def _pick_closest(hyp_len: int, lower: int | None, upper: int | None) -> int:
    """The closer of the nearest length below (lower < hyp_len) and at or above (upper).

    Ties go to the shorter reference, as in nltk's closest_ref_length.
    """
    if upper is None:
        return lower
    if lower is None:
        return upper
    return lower if hyp_len - lower <= upper - hyp_len else upper


def _closest_length(lengths: list[int], hyp_len: int) -> int:
    """Closest length in a sorted list of distinct lengths (non-empty)."""
    i = bisect_left(lengths, hyp_len)
    lower = lengths[i - 1] if i > 0 else None
    upper = lengths[i] if i < len(lengths) else None
    return _pick_closest(hyp_len, lower, upper)


def _bleu_from_matches(matches: list[int], hyp_len: int, ref_len: int,
                       ns: tuple[int, ...]) -> dict[int, float]:
    """BLEU-n for every n in ns from the clipped match counts of orders 1..max(ns).

    Each floating-point operation is the one nltk performs, in the same order, so the
    result is bit-identical to sentence_bleu(..., smoothing_function=method1).
    """
    if matches[0] == 0:  # no unigram matches (includes the empty hypothesis): nltk returns 0
        return {n: 0.0 for n in ns}
    log_p = []
    for k, m in enumerate(matches):
        total = max(1, hyp_len - k)  # number of (k+1)-grams, floored at 1 like nltk
        # nltk: Fraction(m, total) -> float(m / total); method1: (0 + eps) / total
        log_p.append(math.log(m / total if m else _EPSILON / total))
    # hyp_len == 0 (BP 0 in nltk) cannot reach here: it has no unigram matches
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return {n: bp * math.exp(math.fsum((1 / n) * lp for lp in log_p[:n])) for n in ns}


# ---------------------------------------------------------------------------------------
# BLEU against a fixed reference set


class BleuReference:
    """A reference set prepared once for fast sentence BLEU (Texygen / nltk method1).

    Holds, for n = 1..max_n, the maximum count of every n-gram over all references, and
    the sorted distinct reference lengths. Scoring a hypothesis then costs O(len(hyp)).
    Build a new one whenever the reference set changes.
    """

    def __init__(self, references: Sequence[Tokens], max_n: int = 5):
        if max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        if len(references) == 0:
            raise ValueError("BLEU needs at least one reference")
        self.max_n = max_n
        self.n_references = len(references)
        # n-gram tuple -> max count in any single reference; the orders share one dict
        # since tuples of different lengths never collide
        max_counts: dict[tuple, int] = {}
        lengths = set()
        for ref in references:
            _check_tokens(ref, "each reference")
            lengths.add(len(ref))
            for counts in _ngram_counts(ref, max_n):
                for g, c in counts.items():
                    if c > max_counts.get(g, 0):
                        max_counts[g] = c
        self.max_counts = max_counts
        self.lengths = sorted(lengths)

    def sentence_scores(self, hyp: Tokens, ns: Iterable[int] = DEFAULT_NS) -> dict[int, float]:
        """Sentence BLEU-n of one hypothesis for each n in ns, sharing the clipped counts."""
        _check_tokens(hyp, "hypothesis")
        ns = _check_ns(ns, self.max_n)
        return self._scores(hyp, ns)

    def sentence_bleu(self, hyp: Tokens, n: int) -> float:
        """Equals nltk sentence_bleu(references, hyp, (1/n,)*n, smoothing_function=method1)."""
        return self.sentence_scores(hyp, (n,))[n]

    def corpus_scores(self, hyps: Sequence[Tokens], ns: Iterable[int] = DEFAULT_NS) -> dict[int, float]:
        """Mean over hypotheses of sentence BLEU-n, for each n in ns (the text-GAN BLEU)."""
        ns = _check_ns(ns, self.max_n)
        if len(hyps) == 0:
            raise ValueError("no hypotheses to score")
        sums = dict.fromkeys(ns, 0.0)
        for hyp in hyps:
            _check_tokens(hyp, "each hypothesis")
            for n, s in self._scores(hyp, ns).items():
                sums[n] += s
        return {n: sums[n] / len(hyps) for n in ns}

    def _scores(self, hyp: Tokens, ns: tuple[int, ...]) -> dict[int, float]:
        get = self.max_counts.get
        matches = [sum(min(c, get(g, 0)) for g, c in counts.items())
                   for counts in _ngram_counts(hyp, max(ns))]
        return _bleu_from_matches(matches, len(hyp), _closest_length(self.lengths, len(hyp)), ns)


def bleu(hypotheses: Sequence[Tokens], references: Sequence[Tokens],
         ns: Iterable[int] = DEFAULT_NS) -> dict[int, float]:
    """Text-GAN BLEU: {n: mean sentence BLEU-n of each hypothesis against all references}."""
    ns = _check_ns(ns)
    return BleuReference(references, max_n=max(ns)).corpus_scores(hypotheses, ns)


def nltk_bleu_scores(references: Sequence[Tokens], hypothesis: Tokens,
                     ns: Iterable[int] = DEFAULT_NS) -> dict[int, float]:
    """{n: nltk's sentence BLEU-n of one hypothesis}, one nltk call per n as Texygen's loop
    makes them: the slow reference the benchmarks time and check BleuReference against.
    nltk is imported here, so the rest of this module runs without it."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    return {n: sentence_bleu(references, hypothesis, (1 / n,) * n, smoothing_function=smooth) for n in ns}


# ---------------------------------------------------------------------------------------
# self-BLEU


def self_bleu(samples: Sequence[Tokens], ns: Iterable[int] = DEFAULT_NS,
              max_samples: int | None = None) -> dict[int, float]:
    """Self-BLEU: {n: mean sentence BLEU-n of each sample against all the other samples}.

    Only a sample's own index is left out of its references: an identical copy elsewhere
    in the set is another sample, and counts (so duplicates raise self-BLEU, as they
    should). max_samples, if given, keeps only the first max_samples samples, used both
    as hypotheses and as references (Texygen's fast mode uses the first 500).

    Exact and fast: per n-gram the table keeps the largest count, the sample holding it,
    and the second-largest count over the other samples, so the max count over "all
    samples but j" is the top count unless j holds it, in which case it is the runner-up.
    Reference lengths are handled the same way through per-length counts.
    """
    ns = _check_ns(ns)
    if max_samples is not None:
        samples = samples[:max_samples]
    if len(samples) < 2:
        raise ValueError(f"self-BLEU needs at least 2 samples, got {len(samples)}")
    max_n = max(ns)

    # n-gram -> [top count, index of a sample holding it, top count among the others]
    table: dict[tuple, list[int]] = {}
    all_counts = []
    for j, sample in enumerate(samples):
        _check_tokens(sample, "each sample")
        counts = _ngram_counts(sample, max_n)
        all_counts.append(counts)
        for order in counts:
            for g, c in order.items():
                e = table.get(g)
                if e is None:
                    table[g] = [c, j, 0]
                elif c > e[0]:
                    e[2], e[0], e[1] = e[0], c, j
                elif c > e[2]:  # includes a tie with the top count: runner-up = top
                    e[2] = c

    length_count = Counter(len(s) for s in samples)
    lengths = sorted(length_count)

    sums = dict.fromkeys(ns, 0.0)
    for j, (sample, counts) in enumerate(zip(samples, all_counts)):
        matches = []
        for order in counts:
            m = 0
            for g, c in order.items():
                top, holder, runner_up = table[g]
                m += min(c, runner_up if holder == j else top)
            matches.append(m)
        h = len(sample)
        if length_count[h] > 1:  # another sample has exactly this length
            r = h
        else:  # nearest lengths on either side of h, skipping h itself
            i = bisect_left(lengths, h)
            r = _pick_closest(h, lengths[i - 1] if i > 0 else None,
                              lengths[i + 1] if i + 1 < len(lengths) else None)
        for n, s in _bleu_from_matches(matches, h, r, ns).items():
            sums[n] += s
    return {n: sums[n] / len(samples) for n in ns}


# ---------------------------------------------------------------------------------------
# diversity and length


def distinct_n(samples: Iterable[Tokens], n: int) -> float:
    """Distinct-n: unique n-grams / total n-grams over all samples; 0.0 when there are none.

    n-grams never cross sample boundaries. (Li et al. 2016 normalise by the token count
    in places; we use the n-gram count, so distinct-n lies in [0, 1] for every n.)
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    unique = set()
    total = 0
    for s in samples:
        _check_tokens(s, "each sample")
        grams = list(zip(*(s[i:] for i in range(n))))
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def length_stats(samples: Sequence[Tokens]) -> dict:
    """{"n", "mean", "std" (population), "min", "max"} of sample lengths in tokens."""
    if len(samples) == 0:
        raise ValueError("no samples")
    lens = [len(s) for s in samples]
    mean = sum(lens) / len(lens)
    std = math.sqrt(sum((x - mean) ** 2 for x in lens) / len(lens))
    return {"n": len(lens), "mean": mean, "std": std, "min": min(lens), "max": max(lens)}


def length_distribution(samples: Sequence[Tokens]) -> dict[int, float]:
    """{length: share of samples with that length}, for lengths that occur."""
    if len(samples) == 0:
        raise ValueError("no samples")
    counts = Counter(len(s) for s in samples)
    return {k: c / len(samples) for k, c in sorted(counts.items())}


def length_histogram(samples: Sequence[Tokens], max_len: int | None = None) -> list[float]:
    """Shares of sample lengths 0..max_len as a list (index = length), for plotting.

    Plot samples and data on the same axis by passing the same max_len to both, e.g.
    max(length_stats(a)["max"], length_stats(b)["max"]). Samples longer than max_len
    are counted in the last bin.
    """
    dist = length_distribution(samples)
    if max_len is None:
        max_len = max(dist)
    if max_len < 0:
        raise ValueError(f"max_len must be >= 0, got {max_len}")
    hist = [0.0] * (max_len + 1)
    for k, p in dist.items():
        hist[min(k, max_len)] += p
    return hist


def length_tv_distance(samples: Sequence[Tokens], references: Sequence[Tokens]) -> float:
    """Total-variation distance between the length distributions: 0.5 * sum |p(k) - q(k)|."""
    p = length_distribution(samples)
    q = length_distribution(references)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in p.keys() | q.keys())


# ---------------------------------------------------------------------------------------
# number names


def numbers_metrics(samples: Sequence[str], train: set[str], test: set[str],
                    parse: Callable[[str], int | None]) -> dict:
    """Validity, novelty and coverage of generated number names.

    parse(text) returns the number a valid number name spells and None otherwise (the
    dataset's checker, passed in so that metrics never import data code). Samples are
    compared with the splits as exact strings, so they must be in the splits' canonical
    form.

    - n_samples: number of samples.
    - n_valid: samples that are valid number names, counted with repeats.
    - precision: n_valid / n_samples.
    - distinct_valid: number of distinct valid samples.
    - novelty: distinct valid samples not in train / distinct_valid (0.0 if none valid).
    - recall: share of test strings produced at least once among the samples.
    """
    if len(samples) == 0:
        raise ValueError("no samples")
    if len(test) == 0:
        raise ValueError("recall needs a non-empty test set")
    distinct = Counter(samples)
    valid = {s for s in distinct if parse(s) is not None}
    n_valid = sum(distinct[s] for s in valid)
    return {
        "n_samples": len(samples),
        "n_valid": n_valid,
        "precision": n_valid / len(samples),
        "distinct_valid": len(valid),
        "novelty": sum(s not in train for s in valid) / len(valid) if valid else 0.0,
        "recall": sum(t in distinct for t in test) / len(test),
    }


# ---------------------------------------------------------------------------------------
# NLL-oracle


def oracle_nll(samples: Sequence[Tokens], oracle, seq_len: int, vocab_size: int,
               batch_size: int = 256, exact: bool = False) -> dict:
    """NLL-oracle (Yu et al. 2017, SeqGAN): mean NLL per token of samples under the oracle.

    Each sample's tokens are oracle ids written as decimal strings ("17", "4032"). A
    sample is scored only if every token is an integer in [0, vocab_size) and it has at
    least one token; anything else (an <unk>, a stray word, an empty sample) cannot be
    scored by the oracle and is counted in `invalid` instead of being scored. Samples
    longer than seq_len (the oracle's horizon; SeqGAN samples exactly seq_len tokens) are
    scored on their first seq_len tokens; shorter ones on the tokens they have.
    exact=True, SeqGAN's protocol (a fixed-length corpus, Corpus.fixed_length = seq_len):
    only samples of exactly seq_len valid tokens are scored, every one on all seq_len; any
    other length is counted in `invalid` too (TextDuel's samplers never write one there;
    samples from elsewhere may).

    Returns {"nll": mean over the scored tokens (nan if none), "invalid": share of
    samples not scored, "scored": number scored}. oracle.nll(ids (B, T), lengths (B,))
    is the oracle's own per-token scorer (datasets/oracle.py).
    """
    import torch  # local: the rest of this module is pure Python

    if len(samples) == 0:
        raise ValueError("no samples")
    rows = []
    for s in samples:
        _check_tokens(s, "each sample")
        if exact and len(s) != seq_len:
            continue
        try:
            ids = [int(t) for t in s[:seq_len]]
        except ValueError:
            continue
        if ids and all(0 <= i < vocab_size for i in ids) and all(str(i) == t for i, t in zip(ids, s)):
            rows.append(ids)
    out = {"invalid": 1 - len(rows) / len(samples), "scored": len(rows), "nll": float("nan")}
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):  # (B, T, V) logits: keep B moderate
        chunk = rows[start:start + batch_size]
        lengths = torch.tensor([len(r) for r in chunk])
        ids = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(chunk):
            ids[i, :len(r)] = torch.tensor(r)
        n = int(lengths.sum())
        total, count = total + oracle.nll(ids, lengths) * n, count + n
    if count:
        out["nll"] = total / count
    return out


# ---------------------------------------------------------------------------------------
# novelty against a training set


def novelty(samples: Sequence[Tokens], train: Iterable[Tokens]) -> float:
    """Share of samples not identical, token for token, to any training example.

    Counted over samples with repeats (two copies of a novel sample count twice); an
    empty sample is novel unless the training set holds an empty example. Both sides
    must be tokenized the same way. (numbers_metrics' novelty is another figure: over
    distinct *valid* samples only.)
    """
    if len(samples) == 0:
        raise ValueError("no samples")
    seen = set()
    for t in train:
        _check_tokens(t, "each training example")
        seen.add(tuple(t))
    for s in samples:
        _check_tokens(s, "each sample")
    return sum(tuple(s) not in seen for s in samples) / len(samples)
