import os

import pytest
import torch

from datasets import IGNORE_INDEX, LMData, build_tokenizer, load_corpus
from datasets import corpora, numbers, oracle
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID


# ---------------------------------------------------------------- numbers

def test_numbers_checker_on_every_number():
    for n in range(1, 10000):
        assert numbers.parse(numbers.number_name(n)) == n


@pytest.mark.parametrize("text", ["zero", "ten thousand", "one hundred and five", "twenty-one", "hundred",
                                  "one thousand zero", "twenty ten", "nineteen hundred", "one one",
                                  "thousand", "five hundred thousand", "ninety", "", "seven hundred ninety nine ."])
def test_numbers_checker_rejects_near_misses(text):
    expected = 90 if text == "ninety" else None
    assert numbers.parse(text) == expected


def test_numbers_names_examples():
    assert numbers.number_name(9999) == "nine thousand nine hundred ninety nine"
    assert numbers.number_name(105) == "one hundred five"
    assert numbers.number_name(7000) == "seven thousand"
    assert numbers.parse("  two   thousand  ") == 2000  # whitespace is normalised


def test_numbers_splits_fixed_disjoint_and_complete():
    a, b = numbers.splits(), numbers.splits()
    assert a == b
    sets = [set(a[s]) for s in ("train", "val", "test")]
    assert sum(map(len, sets)) == 9999 and len(set.union(*sets)) == 9999


# ---------------------------------------------------------------- oracle

def test_oracle_reproducible_from_seed():
    o1, o2, o3 = oracle.Oracle(), oracle.Oracle(), oracle.Oracle(seed=1)
    for p, q in zip(o1.parameters(), o2.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(o1.head.weight, o3.head.weight)
    s1, s2 = o1.sample(50, seed=5), o2.sample(50, seed=5)
    assert torch.equal(s1, s2) and s1.shape == (50, oracle.SEQ_LEN)
    assert not torch.equal(s1, o1.sample(50, seed=6))


def test_oracle_scores_its_own_samples_better_than_uniform_noise():
    o = oracle.Oracle()
    own = o.nll(o.sample(200, seed=1))
    noise = o.nll(torch.randint(oracle.VOCAB, (200, oracle.SEQ_LEN), generator=torch.Generator().manual_seed(0)))
    assert own < noise


def test_oracle_nll_respects_lengths():
    o = oracle.Oracle()
    seqs = o.sample(4, seed=2)
    full = o.nll(seqs[:, :10])
    assert o.nll(seqs, lengths=torch.full((4,), 10)) == pytest.approx(full, rel=1e-6)


def test_oracle_follows_seqgans_fixed_length_protocol(monkeypatch):
    # `oracle` (TextDuel's own random oracle, not SeqGAN's) has SeqGAN's sequences of exactly
    # 20 tokens and no end token. Its NLL-test does not score a 21st target per sequence, an
    # <eos> (block_size 21) that SeqGAN's data does not have: with fixed_length = 20 it scores
    # exactly the 20 tokens (the layout itself: tests/test_seqgan_oracle.py)
    monkeypatch.setattr(oracle, "SIZES", {"train": 30, "val": 5, "test": 5})
    c = load_corpus("oracle")
    assert c.fixed_length == oracle.SEQ_LEN == 20 and isinstance(c.extras["oracle"], oracle.Oracle)
    data = LMData(c, build_tokenizer(c))
    assert data.block_size == 20 and data.n_tokens("test") == 20 * 5
    assert load_corpus("oracle", mode="stream").fixed_length == 0  # one text: no examples, no length
    assert load_corpus("numbers").fixed_length == 0  # every other corpus: examples end with <eos>


# ---------------------------------------------------------------- names and the real corpora

def test_makemore_split_equals_makemore_construction(data_dir):
    words = open(os.path.join(data_dir, "names.txt")).read().splitlines()
    words = [w.strip() for w in words if w.strip()]
    with torch.random.fork_rng():
        torch.manual_seed(3407)  # exactly as makemore: seed, then randperm in create_datasets
        rp = torch.randperm(len(words)).tolist()
    mm_train, mm_test = [words[i] for i in rp[:-1000]], [words[i] for i in rp[-1000:]]
    c = load_corpus("names", data_dir=data_dir)
    assert c.test == mm_test
    assert c.train + c.val == mm_train  # val is carved from makemore's train, never from test
    assert len(c.val) == 1000


def test_dedup_split_has_no_name_in_two_splits(data_dir):
    c = load_corpus("names", data_dir=data_dir, split="dedup")
    tr, va, te = set(c.train), set(c.val), set(c.test)
    assert not (tr & va or tr & te or va & te)
    assert len(tr | va | te) == 29494


def test_real_corpora_splits(data_dir):
    sh = load_corpus("shakespeare", data_dir=data_dir)
    text = open(os.path.join(data_dir, "tinyshakespeare.txt")).read()
    assert sh.val == text[int(0.9 * len(text)):]  # nanoGPT's val exactly
    assert sh.train + sh.test + sh.val == text
    coco = load_corpus("coco", data_dir=data_dir)
    assert len(coco.train) == 9000 and len(coco.val) == 1000 and len(coco.test) == 10000
    assert not set(range(0)) and load_corpus("coco", data_dir=data_dir).val == coco.val  # seeded, repeatable


# ---------------------------------------------------------------- file resolution
# (bad corpus files, names and contexts: tests/test_bad_inputs.py)

def test_env_data_dir_and_cache(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDUEL_DATA_DIR", data_dir)
    assert len(load_corpus("names").test) == 1000
    monkeypatch.delenv("TEXTDUEL_DATA_DIR")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "names.txt").write_bytes(open(os.path.join(data_dir, "names.txt"), "rb").read())
    monkeypatch.setenv("TEXTDUEL_CACHE_DIR", str(cache))
    assert len(load_corpus("names").test) == 1000


def test_user_file_sequence_and_stream(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("\n".join(f"line number {i}" for i in range(100)))
    seq = load_corpus(str(p), level="word")
    assert len(seq.train) == 90 and len(seq.val) == 5 and len(seq.test) == 5
    assert set(seq.train).isdisjoint(seq.test)
    stream = load_corpus(str(p), mode="stream")
    assert stream.train + stream.val + stream.test == p.read_text()


# ---------------------------------------------------------------- batching

def test_sequence_batches_pad_and_mask():
    c = load_corpus("numbers")
    tok = build_tokenizer(c)
    data = LMData(c, tok)
    x, y = data.train_batch(0, 8, seed=1)
    for xi, yi in zip(x, y):
        n = int((yi != IGNORE_INDEX).sum())
        assert xi[0] == BOS_ID and yi[n - 1] == EOS_ID
        assert torch.equal(xi[1:n], yi[: n - 1])  # targets are inputs shifted by one
        assert (xi[n:] == PAD_ID).all() and (yi[n:] == IGNORE_INDEX).all()


def test_train_batches_are_a_pure_function_of_step():
    c = load_corpus("numbers")
    data = LMData(c, build_tokenizer(c))
    a, b = data.train_batch(17, 16, seed=3), data.train_batch(17, 16, seed=3)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], data.train_batch(18, 16, seed=3)[0])
    # one epoch of batches covers every training example exactly once
    N = len(c.train)
    seen = [tuple(r.tolist()) for s in range(N // 50) for r in data.train_batch(s, 50, seed=3)[1]]
    assert len(seen) == (N // 50) * 50


def test_eval_pass_scores_every_token_once(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("abcdefghij" * 50)
    c = load_corpus(str(p), level="char", mode="stream")
    tok = build_tokenizer(c)
    for bs in (7, 16, 24):
        data = LMData(c, tok, block_size=bs)
        n = sum(int((y != IGNORE_INDEX).sum()) for _, y in data.eval_batches("val", 4))
        assert n == len(c.val) - 1
    seq = load_corpus("numbers")
    data = LMData(seq, build_tokenizer(seq))
    n = sum(int((y != IGNORE_INDEX).sum()) for _, y in data.eval_batches("test", 100))
    assert n == sum(len(t.split()) + 1 for t in seq.test)
