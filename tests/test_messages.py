"""datasets.messages: the generated corpus of short messages (a stand-in for a user's own file).

The statistics are measured here with the project's own word tokenizer, lowercased, and
the length check is the one LMData applies when no block_size is given.
"""

import re
import time

import pytest

from datasets import LMData, build_tokenizer, messages
from datasets.batching import MAX_AUTO_BLOCK, OUTLIER_FLOOR, OUTLIER_RATIO, check_lengths, typical_length
from datasets.corpora import Corpus, clean_text, load_file
from datasets.tokenizers import SPECIALS, WordTokenizer

SPLIT = WordTokenizer(list(SPECIALS), lowercase=True).split


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory):
    """The default corpus (seed 0, 10,000 + 1,000 lines), written once: (train path, test path, seconds)."""
    t0 = time.perf_counter()
    paths = messages.write_corpus(tmp_path_factory.mktemp("messages"))
    return (*paths, time.perf_counter() - t0)


def lines_of(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_same_seed_same_bytes_other_seed_other_text(default_corpus, tmp_path):
    train, test, _ = default_corpus
    messages.language.cache_clear()  # rebuild the vocabulary too
    again = messages.write_corpus(tmp_path / "again", seed=0)
    assert again[0].read_bytes() == train.read_bytes()
    assert again[1].read_bytes() == test.read_bytes()
    other = messages.write_corpus(tmp_path / "other", seed=1, n_train=500, n_test=50)
    assert lines_of(other[0]) != lines_of(train)[:500]
    assert messages.generate(300, 5) == messages.generate(300, 5)


def test_train_and_test_are_different_messages(default_corpus):
    train, test = (lines_of(p) for p in default_corpus[:2])
    assert train[:1000] != test
    seen = set(train)
    # only short reactions ("lol", "thanks!") repeat across the files
    repeated = [line for line in test if line in seen]
    assert len(repeated) < 0.08 * len(test)
    assert all(len(SPLIT(line)) <= 6 for line in repeated)


def test_default_corpus_statistics(default_corpus):
    train, test = (lines_of(p) for p in default_corpus[:2])
    assert len(train) == 10_000 and len(test) == 1_000
    lengths = [len(SPLIT(line)) for line in train]
    assert 20 <= sum(lengths) / len(lengths) <= 22
    assert 180 <= max(lengths) <= 200
    assert sum(3 <= n <= 30 for n in lengths) >= 0.8 * len(lengths)  # most lines are short ...
    assert sum(n > 48 for n in lengths) >= 0.002 * len(lengths)      # ... with a heavy tail
    types = {w for line in train for w in SPLIT(line)}
    assert len(types) >= 15_000
    test_words = [w for line in test for w in SPLIT(line) if re.fullmatch(r"\w+", w)]
    unseen = sum(w not in types for w in test_words) / len(test_words)
    assert 0.01 <= unseen <= 0.08


def test_heavy_tail_passes_the_automatic_length_check(default_corpus):
    train, test = (lines_of(p) for p in default_corpus[:2])
    lengths = {"train": [len(SPLIT(line)) for line in train], "test": [len(SPLIT(line)) for line in test]}
    for ns in (lengths["train"], lengths["train"] + lengths["test"]):
        assert max(ns) <= min(MAX_AUTO_BLOCK - 1, max(OUTLIER_RATIO * typical_length(ns), OUTLIER_FLOOR))
    corpus = Corpus("messages", "word", "sequence", train, [], test, lowercase=True)
    check_lengths(corpus, lengths)  # raises CorpusError on an outlier


def test_the_files_load_as_a_users_corpus_without_max_len(default_corpus):
    train, test, _ = default_corpus
    corpus = load_file(train, level="word", test_file=test)
    corpus.lowercase = True
    data = LMData(corpus, build_tokenizer(corpus))  # block_size 0: sized from the data, outliers refused
    assert 181 <= data.block_size <= 201
    assert 0.01 <= data.oov["test"] <= 0.08


def test_text_is_realistic_and_clean(default_corpus):
    train, test, _ = default_corpus
    raw = train.read_bytes() + test.read_bytes()
    text = raw.decode("utf-8")
    assert not raw.startswith(b"\xef\xbb\xbf") and "\ufeff" not in text
    assert not clean_text(text)[1], "control characters in the generated text"
    lines = text.split("\n")[:-1]
    assert text.splitlines() == lines and "\r" not in text and "\t" not in text
    assert all(line and line == line.strip() for line in lines), "empty line or stray whitespace"
    for piece in (". ", ", ", "!", "?", "...", '"', ": ", "; ", " - ", "don't", "it's", "I'm", "@", "#",
                  "https://", "www.", "$", "%", "é", "ü", "ñ", "😂", "👍"):
        assert piece in text, piece
    assert len(re.findall(r"\b[A-Z]{3,}\b", text)) > 100            # ALL-CAPS words
    assert sum(line[0].isupper() for line in lines) > 0.5 * len(lines)  # sentence-initial capitals
    assert sum(line[0].islower() for line in lines) > 0.05 * len(lines)  # and writers who never capitalise
    assert re.search(r"\b\d+:\d\d\b", text) and re.search(r"\b(19|20)\d\d\b", text)  # times, years


def test_generation_is_fast(default_corpus):
    assert default_corpus[2] < 3.0  # 11,000 lines, both files written


def test_generate_refuses_an_unknown_split():
    with pytest.raises(ValueError, match="split"):
        messages.generate(10, 0, split="dev")


def test_main_writes_the_files_and_prints_their_paths(tmp_path, capsys):
    messages.main([str(tmp_path / "out"), "--seed", "3", "--n_train", "400", "--n_test", "60"])
    out = capsys.readouterr().out.splitlines()
    train, test = tmp_path / "out" / "train.txt", tmp_path / "out" / "test.txt"
    assert out[:2] == [str(train), str(test)]
    assert len(lines_of(train)) == 400 and len(lines_of(test)) == 60
    assert "seed 3" in out[2] and "mean" in out[2] and "longest" in out[2]
    assert lines_of(train) == messages.generate(400, 3)
