"""The same sample metrics for every model family, during training and after it.

`SampleEvaluator(corpus, tokenizer, references=...)` is built once per run: it tokenizes the
reference split and prepares the BLEU reference table (max n-gram counts and lengths) once.
During training the references are the VALIDATION split (the default): the eval/ curves are
what people tune on, and tuning must never look at test. The test split is read once, by
the final scoring of the selected model (`references="test"`: the trainers' final metrics,
experiments.compare, experiments.score). Each call
scores a list of sample strings and, given a RunLogger, logs them under the tags below,
which every trainer (train_lm.py, the GAN trainer) and experiments/compare.py share, so
the curves of an MLE model and a GAN overlay on one TensorBoard chart:

    eval/bleu2 .. eval/bleu5            BLEU-n against the reference split (text-GAN protocol)
    eval/self_bleu2 .. eval/self_bleu5  each sample against the other samples, recomputed per call
    eval/distinct1, eval/distinct2      unique n-grams / n-grams over all samples
    eval/unique_share                   distinct samples / samples
    eval/length_mean                    mean sample length in tokens
    eval/length_tv                      total-variation distance of sample lengths from the references' lengths
    eval/nll_oracle, eval/oracle_invalid  `oracle`, `seqgan_oracle`: NLL under the oracle, share not scorable
    eval/precision, eval/novelty, eval/recall  `numbers` only (and eval/distinct_valid); recall is of the
                                        reference split

NLL on validation (`val/nll`) is logged by the trainers themselves.

Tokens are `tokenizer.split(text)` for samples and references alike: the same
tokenization on both sides (lowercased words and punctuation for COCO, characters for
names; a model at bpe level is scored in its corpus's words or characters,
datasets.batching.reference_tokenizer, never in its subword pieces), with one exception
(`SampleTokenizer`): the literal "<unk>" that decode() writes
for an unknown symbol is read back as ONE token, <unk>, where the plain split would cut
it into "<", "unk", ">" (or five characters). It never matches a reference. On the
oracle corpora, a sample whose tokens are not all integers in [0, 5000) (an <unk>, an empty
sample), or, their length being fixed (Corpus.fixed_length), one that is not exactly 20
tokens, cannot be scored by the oracle: it is left out of eval/nll_oracle and counted in
eval/oracle_invalid (see metrics.oracle_nll). TextDuel's samplers write exactly 20 valid
tokens there; samples from elsewhere may not.
"""

from __future__ import annotations

from datasets import oracle as oracle_mod
from datasets.batching import reference_tokenizer
from datasets.corpora import Corpus
from datasets.tokenizers import UNK, UNK_ID, Tokenizer
from experiments.scoring.metrics import (
    DEFAULT_NS,
    BleuReference,
    distinct_n,
    length_stats,
    length_tv_distance,
    numbers_metrics,
    oracle_nll,
    self_bleu,
)


class SampleTokenizer:
    """A tokenizer's split and encode for generated text: the literal "<unk>" is one token.

    decode() keeps an unknown symbol visible as "<unk>"; splitting the decoded text again
    with the word or character rules would cut it into pieces that are not <unk>. Every
    other symbol is split exactly as tokenizer.split does.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.base = tokenizer
        self.level, self.lowercase = tokenizer.level, tokenizer.lowercase
        self.itos, self.stoi = tokenizer.itos, tokenizer.stoi

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size

    def split(self, text: str) -> list[str]:
        if self.level == "bpe":  # bytes cover any text: a literal "<unk>" there is five bytes, never <unk>
            return self.base.split(text)
        out = []
        for i, part in enumerate(text.split(UNK)):
            if i:
                out.append(UNK)
            out.extend(self.base.split(part))
        return out

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(s, UNK_ID) for s in self.split(text)]


class SampleEvaluator:
    """Scores sample strings against a corpus; reference tables built once, in __init__."""

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, ns=DEFAULT_NS, references: str = "val"):
        if corpus.mode != "sequence":
            raise ValueError(f"{corpus.name} is a stream corpus: sample metrics need one example per line "
                             "(sequence mode)")
        if references not in ("val", "test"):
            raise ValueError(f"references must be 'val' (during training) or 'test' (final scoring), got {references!r}")
        self.references = references
        if tokenizer.level == "bpe":  # never a model's subword pieces: the corpus's own words or characters
            tokenizer = reference_tokenizer(corpus)
        self.tokenizer = tokenizer if isinstance(tokenizer, SampleTokenizer) else SampleTokenizer(tokenizer)
        tokenizer = self.tokenizer
        self.ns = tuple(ns)
        self.reference_tokens = [tokenizer.split(t) for t in getattr(corpus, references)]
        self.bleu_reference = BleuReference(self.reference_tokens, max_n=max(self.ns))
        self.oracle = corpus.extras.get("oracle")
        self.fixed_length = corpus.fixed_length  # > 0: NLL-oracle scores exactly this many tokens per sample
        self.parse = corpus.extras.get("parse")
        if self.parse is not None:
            self.train_set, self.reference_set = set(corpus.train), set(getattr(corpus, references))

    def __call__(self, samples: list[str], step: int | None = None, logger=None) -> dict:
        """Metrics of samples as {name: value}; logged as eval/<name> at step when a logger is given."""
        metrics = self.score(samples)
        if logger is not None:
            logger.scalars(metrics, step, prefix="eval/")
        return metrics

    def score(self, samples: list[str]) -> dict:
        if len(samples) < 2:
            raise ValueError(f"need at least 2 samples (self-BLEU compares them), got {len(samples)}")
        toks = [self.tokenizer.split(s) for s in samples]
        out = {f"bleu{n}": v for n, v in self.bleu_reference.corpus_scores(toks, self.ns).items()}
        out.update({f"self_bleu{n}": v for n, v in self_bleu(toks, self.ns).items()})
        out["distinct1"] = distinct_n(toks, 1)
        out["distinct2"] = distinct_n(toks, 2)
        out["unique_share"] = len(set(samples)) / len(samples)
        out["length_mean"] = length_stats(toks)["mean"]
        out["length_tv"] = length_tv_distance(toks, self.reference_tokens)
        if self.oracle is not None:
            o = oracle_nll(toks, self.oracle, seq_len=self.fixed_length or oracle_mod.SEQ_LEN,
                           vocab_size=oracle_mod.VOCAB, exact=self.fixed_length > 0)
            out["nll_oracle"], out["oracle_invalid"] = o["nll"], o["invalid"]
        if self.parse is not None:
            # the splits hold canonical names (single spaces); samples are compared in that form
            m = numbers_metrics([" ".join(t) for t in toks], self.train_set, self.reference_set, self.parse)
            out.update(precision=m["precision"], novelty=m["novelty"], recall=m["recall"],
                       distinct_valid=m["distinct_valid"])
        return out


# Collapse margins, relative to real data scored the same way (same number of sentences, same
# references): a generator is flagged when its Self-BLEU-5 exceeds the real sentences' by more
# than SELF_BLEU_MARGIN, its share of distinct samples falls short of theirs by more than
# UNIQUE_MARGIN, or (GAN) its validation NLL rises during the adversarial phase by more than
# NLL_RISE_MARGIN of its value when the phase started. Real text is the yardstick: a fixed
# threshold (say, "under 50 % distinct") misses a generator that has lost a third of its
# diversity on a corpus where every real sentence is distinct.
SELF_BLEU_MARGIN, UNIQUE_MARGIN, NLL_RISE_MARGIN = 0.10, 0.10, 0.10


def collapse_warnings(scores: dict, real: dict, nll_rise: float | None = None,
                      self_bleu_margin: float = SELF_BLEU_MARGIN, unique_margin: float = UNIQUE_MARGIN,
                      nll_rise_margin: float = NLL_RISE_MARGIN) -> list[str]:
    """The ways `scores` (a generator's sample metrics) depart from `real` (real sentences' metrics,
    scored alike) by more than the margins; nll_rise: relative rise of the validation NLL during
    the adversarial phase (0.36 = 36 % higher). An empty list: no sign of collapse."""
    out = []
    if "self_bleu5" in scores and "self_bleu5" in real and scores["self_bleu5"] - real["self_bleu5"] > self_bleu_margin:
        out.append(f"Self-BLEU-5 {scores['self_bleu5']:.3f} vs real data {real['self_bleu5']:.3f} "
                   f"(margin {self_bleu_margin:g}): samples are more alike than real text")
    if real.get("unique_share", 0) - scores.get("unique_share", 1) > unique_margin:
        out.append(f"distinct samples {scores['unique_share']:.1%} vs real data {real['unique_share']:.1%} "
                   f"(margin {unique_margin:.0%}): the generator repeats itself")
    if nll_rise is not None and nll_rise > nll_rise_margin:
        out.append(f"validation NLL rose {nll_rise:.0%} during the adversarial phase (margin {nll_rise_margin:.0%}): "
                   "the generator covers less of the data")
    return out


def brief(scores: dict) -> str:
    """Sample metrics on one line, for a trainer's progress messages."""
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
