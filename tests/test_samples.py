"""The sample evaluator (experiments/scoring/samples.py): values on hand cases, dataset-specific
metrics, tags."""

import math

import pytest
import torch
import torch.nn.functional as F
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datasets import Corpus, WordTokenizer, build_tokenizer, load_corpus
from datasets import oracle as oracle_mod
from experiments.core.logger import RunLogger
from experiments.scoring.metrics import oracle_nll
from experiments.scoring.samples import SampleEvaluator, SampleTokenizer

A, B = "a b c d e f", "f e d c b a"


def toy(test=(A, B)):
    train = [A, B, "a a b b"]
    corpus = Corpus("toy", "word", "sequence", train, [A], list(test))
    return corpus, WordTokenizer.fit(train)


def nltk_bleu(refs, hyp, n):
    return sentence_bleu(refs, hyp, (1 / n,) * n, smoothing_function=SmoothingFunction().method1)


def test_samples_equal_to_the_references():
    corpus, tok = toy()
    m = SampleEvaluator(corpus, tok, references="test")([A, B])
    for n in (2, 3, 4, 5):
        assert m[f"bleu{n}"] == pytest.approx(1.0)
        # each sample against the other one only (never itself)
        assert m[f"self_bleu{n}"] == pytest.approx(nltk_bleu([B.split()], A.split(), n))
    assert m["self_bleu2"] < 0.5  # the reversed sentence shares no bigram
    assert m["distinct1"] == pytest.approx(6 / 12) and m["distinct2"] == pytest.approx(10 / 10)
    assert m["unique_share"] == 1.0 and m["length_mean"] == 6.0 and m["length_tv"] == 0.0
    assert not {"nll_oracle", "precision"} & set(m)  # toy corpus: neither oracle nor parser


def test_duplicates_raise_self_bleu_and_lower_unique_share():
    corpus, tok = toy()
    m = SampleEvaluator(corpus, tok, references="test")([A, A, A, "a b"])
    assert m["unique_share"] == 0.5
    assert m["self_bleu5"] > 0.7  # three of four samples have an exact copy among the others
    assert m["length_mean"] == pytest.approx((6 * 3 + 2) / 4)
    refs = [A.split(), B.split()]
    want = sum(nltk_bleu(refs, s.split(), 3) for s in [A, A, A, "a b"]) / 4
    assert m["bleu3"] == pytest.approx(want, abs=1e-12)


def test_self_bleu_is_recomputed_at_every_call():
    corpus, tok = toy()
    ev = SampleEvaluator(corpus, tok, references="test")
    assert ev([A, A])["self_bleu4"] == pytest.approx(1.0)
    assert ev([A, B])["self_bleu4"] < 0.2  # no stale reference set from the previous call


def test_unk_is_one_token_on_both_sides():
    _, tok = toy()
    st = SampleTokenizer(tok)
    assert st.split("a <unk> b") == ["a", "<unk>", "b"]
    assert st.encode("a <unk> zzz") == [tok.stoi["a"], 3, 3]
    assert tok.split("a <unk> b") != st.split("a <unk> b")  # what the wrapper is for


def test_numbers_precision_novelty_recall():
    corpus = load_corpus("numbers")
    ev = SampleEvaluator(corpus, build_tokenizer(corpus), references="test")
    train, test = corpus.train[0], corpus.test[0]
    m = ev([train, test, test, "one hundred and five", "nine nine"])
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["novelty"] == pytest.approx(1 / 2)  # distinct valid: {train, test}; test is novel
    assert m["recall"] == pytest.approx(1 / len(corpus.test))
    assert m["distinct_valid"] == 2


class RecordingOracle:
    """Stands in for datasets.oracle.Oracle: records what it is asked to score and, like the
    real oracle's nll(ids, lengths), returns a mean per valid token: here of a per-token value
    that is simply the token id, so the pooled figure can be computed by hand."""

    def __init__(self):
        self.calls = []

    def nll(self, ids, lengths):
        self.calls.append((ids.tolist(), lengths.tolist()))
        valid = torch.arange(ids.size(1))[None, :] < lengths[:, None]
        return (ids[valid].sum() / valid.sum()).item()


def test_oracle_nll_maps_tokens_to_ids_and_skips_what_it_cannot_score():
    oracle = RecordingOracle()
    samples = [["7", "4999"], ["5000"], ["<unk>", "3"], [], ["07"], [str(i) for i in range(25)]]
    out = oracle_nll(samples, oracle, seq_len=20, vocab_size=5000, batch_size=10)
    assert out["scored"] == 2 and out["invalid"] == pytest.approx(4 / 6)
    (ids, lengths), = oracle.calls
    assert lengths == [2, 20]  # the long sample truncated to the oracle's horizon
    assert ids[0][:2] == [7, 4999] and ids[1] == list(range(20))
    assert out["nll"] == pytest.approx((7 + 4999 + sum(range(20))) / 22)
    assert math.isnan(oracle_nll([["x"], ["y"]], oracle, 20, 5000)["nll"])


def test_oracle_nll_pools_batches_by_their_token_counts():
    # three batches of 2 with 2, 8 and 40 scored tokens: per-token values are the token ids
    samples = [["1"], ["3"], ["100"] * 4, ["200"] * 4, ["10"] * 20, ["20"] * 25]
    oracle = RecordingOracle()
    out = oracle_nll(samples, oracle, seq_len=20, vocab_size=5000, batch_size=2)
    assert [lengths for _, lengths in oracle.calls] == [[1, 1], [4, 4], [20, 20]]
    want = (1 + 3 + 100 * 4 + 200 * 4 + 10 * 20 + 20 * 20) / (2 + 8 + 40)  # mean over all scored tokens
    assert out["nll"] == pytest.approx(want, rel=1e-12)
    mean_of_batch_means = (2 + 150 + 15) / 3
    assert abs(want - mean_of_batch_means) > 1  # the two poolings are far apart on this case


def oracle_token_nll(o, ids):
    """Per-token NLL (B, T) of oracle ids under the oracle, by hand from its logits."""
    logp = F.log_softmax(o._logits(ids), dim=-1)
    return -logp.gather(-1, ids[..., None])[..., 0]


def test_oracle_evaluator_scores_with_the_oracle():
    # a small corpus around the real oracle (loading the full `oracle` corpus samples 14,000 sequences).
    # Built without fixed_length, it keeps the lenient rule of any corpus (shorter samples scored on
    # what they have); the oracle corpora themselves are fixed-length: the test after this one
    o = oracle_mod.Oracle()
    rows = o.sample(400, seed=5)
    lines = [" ".join(map(str, row)) for row in rows.tolist()]
    corpus = Corpus("oracle-small", "word", "sequence", lines[:50], lines[50:75], lines[75:100],
                    fixed_vocab=[str(i) for i in range(oracle_mod.VOCAB)], extras={"oracle": o})
    ev = SampleEvaluator(corpus, build_tokenizer(corpus), references="test")
    # 300 scorable samples, more than one batch of oracle_nll (256): short ones first, full-length
    # ones last, so the two batches hold very different token counts; the last one runs past
    # the oracle's horizon (scored on its first SEQ_LEN tokens)
    T = oracle_mod.SEQ_LEN
    lengths = [1 + i % 5 for i in range(256)] + [T] * 44
    samples = [" ".join(map(str, rows[100 + i, :n].tolist())) for i, n in enumerate(lengths)]
    samples[-1] += " 7 7"
    m = ev(samples + ["<unk> 3", ""])
    assert m["oracle_invalid"] == pytest.approx(2 / 302)
    nll = oracle_token_nll(o, rows[100:400])  # (300, T): a causal model, so a prefix scores as in the full row
    valid = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    want = (nll[valid].sum() / valid.sum()).item()
    assert m["nll_oracle"] == pytest.approx(want, rel=1e-5)
    mean_of_batch_means = (nll[:256][valid[:256]].mean() + nll[256:][valid[256:]].mean()).item() / 2
    mean_of_sample_means = ((nll * valid).sum(1) / valid.sum(1)).mean().item()
    assert min(abs(want - mean_of_batch_means), abs(want - mean_of_sample_means)) > 100 * 1e-5 * want
    assert m["length_mean"] == pytest.approx((sum(lengths) + 2 + 2) / 302)


def test_oracle_evaluator_under_the_fixed_length_protocol():
    # the oracle corpora have fixed_length 20 (SeqGAN's protocol): NLL-oracle scores samples of
    # exactly 20 tokens, and a shorter or longer one (from elsewhere: TextDuel's samplers write
    # exactly 20 there) counts as invalid instead of being scored on what it has
    o = oracle_mod.Oracle()
    rows = o.sample(160, seed=5)
    lines = [" ".join(map(str, row)) for row in rows.tolist()]
    T = oracle_mod.SEQ_LEN
    corpus = Corpus("oracle-small", "word", "sequence", lines[:50], lines[50:75], lines[75:100], fixed_length=T,
                    fixed_vocab=[str(i) for i in range(oracle_mod.VOCAB)], extras={"oracle": o})
    ev = SampleEvaluator(corpus, build_tokenizer(corpus), references="test")
    full = lines[100:160]
    samples = full[:50] + [" ".join(line.split()[:7]) for line in full[50:55]] + [line + " 7" for line in full[55:]]
    m = ev(samples + ["<unk> " + " ".join(full[0].split()[1:]), ""])
    assert m["oracle_invalid"] == pytest.approx(12 / 62)  # 5 short, 5 long, an <unk>, an empty one
    assert m["nll_oracle"] == pytest.approx(oracle_token_nll(o, rows[100:150]).mean().item(), rel=1e-5)


def test_oracle_evaluator_bleu_against_real_references():
    o = oracle_mod.Oracle()
    lines = [" ".join(map(str, row)) for row in o.sample(300, seed=5).tolist()]
    corpus = Corpus("oracle-small", "word", "sequence", lines[:100], lines[100:150], lines[150:],
                    fixed_vocab=[str(i) for i in range(oracle_mod.VOCAB)], extras={"oracle": o})
    m = SampleEvaluator(corpus, build_tokenizer(corpus), references="test")(lines[150:] + ["<unk> 3", ""])
    assert m["length_mean"] == pytest.approx((150 * oracle_mod.SEQ_LEN + 2) / 152)
    assert m["bleu2"] >= 150 / 152 - 1e-12  # 150 samples are references (BLEU 1), two are not


def test_logged_under_the_shared_tags(tmp_path):
    corpus, tok = toy()
    log = RunLogger(tmp_path)
    SampleEvaluator(corpus, tok, references="test")([A, B, "a b c"], step=7, logger=log)
    log.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = {f"eval/bleu{n}" for n in (2, 3, 4, 5)} | {f"eval/self_bleu{n}" for n in (2, 3, 4, 5)}
    want |= {"eval/distinct1", "eval/distinct2", "eval/unique_share", "eval/length_mean"}
    assert want <= tags
    assert [e.step for e in acc.Scalars("eval/bleu2")] == [7]


def test_stream_corpora_and_single_samples_are_refused():
    stream = Corpus("s", "char", "stream", "abcdefgh" * 20, "abcdefgh" * 5, "abcdefgh" * 5)
    with pytest.raises(ValueError, match="stream"):
        SampleEvaluator(stream, WordTokenizer.fit(["a"]))
    corpus, tok = toy()
    with pytest.raises(ValueError, match="at least 2"):
        SampleEvaluator(corpus, tok, references="test")([A])


def test_training_curves_are_scored_against_validation_never_test():
    """The eval/ curves are what people tune on: by default their references are the val split."""
    corpus, tok = toy()  # val = [A], test = [A, B]
    during, final = SampleEvaluator(corpus, tok), SampleEvaluator(corpus, tok, references="test")
    assert during.references == "val" and final.references == "test"
    m_val, m_test = during([B, B]), final([B, B])
    assert m_test["bleu5"] == pytest.approx(1.0)  # B is a test sentence
    assert m_val["bleu5"] == pytest.approx(nltk_bleu([A.split()], B.split(), 5), abs=1e-12)  # only A is a reference
    with pytest.raises(ValueError, match="references must be 'val'"):
        SampleEvaluator(corpus, tok, references="train")
