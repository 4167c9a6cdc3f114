"""Named corpora, their fixed splits, and how real corpus files are found.

A corpus is text split into train / val / test, plus how to read it:
- `level`: "char" or "word" (which tokenizer);
- `mode`: "sequence" (one example per line: names, numbers, COCO captions, oracle
  sequences, each with <bos>/<eos> and padding) or "stream" (one long text cut into
  contiguous windows: Shakespeare).

Splits (fixed, documented, never drawn from an unseeded RNG):

| corpus | train | val | test |
|---|---|---|---|
| numbers | 80% of 1..9999 (seeded shuffle, seed 42) | 10% | 10% |
| oracle | 10,000 oracle samples | 2,000 | 2,000 (separate sampling seeds) |
| names, split=makemore (default) | makemore's train minus its last 1,000 | those last 1,000 of makemore's train | makemore's test: the last 1,000 indices of torch.randperm(32,033) after torch.manual_seed(3407) |
| names, split=dedup | 80% of the 29,494 unique names (seeded shuffle, seed 42) | 10% | 10% |
| shakespeare | characters [0, 85%) | [90%, 100%): nanoGPT's val, unchanged | [85%, 90%), carved from nanoGPT's train |
| coco | image_coco.txt minus 1,000 captions (seeded, seed 42) | those 1,000 | image_coco_test.txt (10,000), also the BLEU references |
| a file of yours | 90% | 5% | 5% (seeded shuffle of lines in sequence mode; contiguous in stream mode) |

names.txt holds 2,539 names twice. The makemore split keeps makemore's construction, so
a duplicated name can sit in both train and test (that is makemore's protocol, and the
numbers quoted against it assume it); the dedup split removes duplicates before
splitting, so no name is in two splits.

File resolution for real corpora, in order: an explicit path; the data directory (the
`data_dir` setting, else the TEXTDUEL_DATA_DIR environment variable); the cache
(TEXTDUEL_CACHE_DIR, else ~/.cache/textduel); a download from the canonical URL. Every
file found or downloaded is checked against its sha256.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import random
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch

from datasets import numbers as numbers_mod
from datasets import oracle as oracle_mod


@dataclass
class Corpus:
    name: str
    level: str                    # "char" | "word"
    mode: str                     # "sequence" | "stream"
    train: list[str] | str        # lines (sequence mode) or one text (stream mode)
    val: list[str] | str
    test: list[str] | str
    fixed_vocab: list[str] | None = None   # the benchmark's own vocabulary (oracle), else built from train
    lowercase: bool = False
    default_block_size: int = 0            # stream mode: the context length when the user sets none
    extras: dict = field(default_factory=dict)  # e.g. the oracle model, the numbers checker


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    sha256: str


FILES = {
    "names": RemoteFile("names.txt", "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt",
                        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"),
    "shakespeare": RemoteFile("tinyshakespeare.txt",
                              "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                              "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    "coco_train": RemoteFile("image_coco.txt", "https://raw.githubusercontent.com/geek-ai/Texygen/master/data/image_coco.txt",
                             "2c0fd1f0f43aac6a9dc3926a535516ccf395de535e15ac1fd17cd569420736f5"),
    "coco_test": RemoteFile("image_coco_test.txt",
                            "https://raw.githubusercontent.com/geek-ai/Texygen/master/data/testdata/test_coco.txt",
                            "72e25c9fb4d2cd43182ac602c92f6ffc377762147f9709572943b0b09174bcae"),
}

SPLIT_SEED = 42


class CorpusError(ValueError):
    """A corpus that cannot be used as given; the message says what to do."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("TEXTDUEL_CACHE_DIR") or Path.home() / ".cache" / "textduel")


def resolve_file(remote: RemoteFile, data_dir: str | None = None, download: bool = True) -> Path:
    """Find `remote` locally (data dir, then cache) or download it into the cache."""
    data_dir = data_dir or os.environ.get("TEXTDUEL_DATA_DIR")
    candidates = ([Path(data_dir) / remote.filename] if data_dir else []) + [cache_dir() / remote.filename]
    for path in candidates:
        if path.is_file():
            digest = sha256_of(path)
            if digest != remote.sha256:
                raise CorpusError(f"{path} has sha256 {digest}, expected {remote.sha256}: the file is corrupt or a "
                                  f"different version. Replace it with {remote.url}")
            return path
    where = (f"the data directory {data_dir}" if data_dir else
             "a data directory (pass data_dir=... or set TEXTDUEL_DATA_DIR)")
    if download:
        target = cache_dir() / remote.filename
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            with urllib.request.urlopen(remote.url, timeout=30) as r, open(tmp, "wb") as f:
                f.write(r.read())
            digest = sha256_of(tmp)
            if digest != remote.sha256:
                tmp.unlink()
                raise CorpusError(f"downloaded {remote.url} but its sha256 is {digest}, expected {remote.sha256}; "
                                  f"place a verified copy of {remote.filename} in {where}")
            os.replace(tmp, target)  # atomic: a half-written download never looks like a cached file
            return target
        except OSError as e:  # no network, DNS failure, HTTP error, read-only cache
            raise CorpusError(f"could not find {remote.filename} locally and the download from {remote.url} failed "
                              f"({e}). Place the file in {where} or in the cache {cache_dir()}") from None
    raise CorpusError(f"{remote.filename} not found; place it in {where} or in the cache {cache_dir()}")


def read_text(path: Path | str) -> str:
    """Read a UTF-8 text file, refusing missing, empty, binary or undecodable files with a clear reason."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"corpus file {path} does not exist")
    if path.is_dir():
        raise CorpusError(f"corpus path {path} is a directory; give the text file inside it")
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"corpus file {path} is empty; a corpus needs at least a few lines of text")
    if b"\x00" in data:
        raise CorpusError(f"corpus file {path} contains NUL bytes: it looks binary, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus file {path} is not valid UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                          "convert it, e.g. `iconv -f latin1 -t utf-8`") from None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _seeded_split(items: list, fractions=(0.9, 0.05, 0.05), seed=SPLIT_SEED):
    items = list(items)
    random.Random(seed).shuffle(items)
    n_train = int(fractions[0] * len(items))
    n_val = int(fractions[1] * len(items))
    return items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:]


# ---------------------------------------------------------------------------- builders

def load_numbers(data_dir=None, split=None):
    s = numbers_mod.splits()
    return Corpus("numbers", "word", "sequence", s["train"], s["val"], s["test"],
                  extras={"parse": numbers_mod.parse})


def load_oracle(data_dir=None, split=None):
    oracle, s = oracle_mod.splits()
    vocab = [str(i) for i in range(oracle_mod.VOCAB)]
    return Corpus("oracle", "word", "sequence", s["train"], s["val"], s["test"], fixed_vocab=vocab,
                  extras={"oracle": oracle})


def makemore_split(words: list[str], seed: int = 3407):
    """makemore's create_datasets: test = last min(1000, 10%) of torch.randperm after manual_seed(seed)."""
    test_size = min(1000, int(len(words) * 0.1))
    rp = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)).tolist()
    return [words[i] for i in rp[:-test_size]], [words[i] for i in rp[-test_size:]]


def load_names(data_dir=None, split=None):
    words = _lines(read_text(resolve_file(FILES["names"], data_dir)))
    split = split or "makemore"
    if split == "makemore":
        train, test = makemore_split(words)
        train, val = train[:-1000], train[-1000:]  # validation for model selection, never the test set
    elif split == "dedup":
        train, val, test = _seeded_split(sorted(set(words)), (0.8, 0.1, 0.1))
    else:
        raise CorpusError(f"names has splits 'makemore' and 'dedup', not {split!r}")
    return Corpus("names", "char", "sequence", train, val, test, extras={"split": split})


def load_shakespeare(data_dir=None, split=None):
    text = read_text(resolve_file(FILES["shakespeare"], data_dir))
    n = len(text)
    a, b = int(0.85 * n), int(0.9 * n)
    return Corpus("shakespeare", "char", "stream", text[:a], text[b:], text[a:b], default_block_size=256)


def load_coco(data_dir=None, split=None):
    train_all = _lines(read_text(resolve_file(FILES["coco_train"], data_dir)))
    test = _lines(read_text(resolve_file(FILES["coco_test"], data_dir)))
    order = list(range(len(train_all)))
    random.Random(SPLIT_SEED).shuffle(order)
    val_idx = set(order[:1000])
    train = [s for i, s in enumerate(train_all) if i not in val_idx]
    val = [s for i, s in enumerate(train_all) if i in val_idx]
    return Corpus("coco", "word", "sequence", train, val, test, lowercase=True)


def load_file(path, level="char", mode="sequence"):
    """Any UTF-8 text file of the user's: lines as sequences, or the whole text as a stream."""
    if level not in ("char", "word") or mode not in ("sequence", "stream"):
        raise CorpusError(f"level must be 'char' or 'word' and mode 'sequence' or 'stream', got {level!r}, {mode!r}")
    text = read_text(path)
    if mode == "stream":
        n = len(text)
        if n < 100:
            raise CorpusError(f"{path} has only {n} characters; a stream corpus needs at least 100")
        a, b = int(0.9 * n), int(0.95 * n)
        return Corpus(str(path), level, mode, text[:a], text[a:b], text[b:], default_block_size=256)
    lines = _lines(text)
    if len(lines) < 20:
        raise CorpusError(f"{path} has {len(lines)} non-empty lines; sequence mode needs at least 20 "
                          "(one example per line). For one long text use mode='stream'")
    train, val, test = _seeded_split(lines)
    return Corpus(str(path), level, mode, train, val, test)


CORPORA = {
    "numbers": load_numbers,
    "oracle": load_oracle,
    "names": load_names,
    "shakespeare": load_shakespeare,
    "coco": load_coco,
}


def load_corpus(name: str, data_dir: str | None = None, split: str | None = None,
                level: str | None = None, mode: str | None = None) -> Corpus:
    """A registered corpus by name, or a text file by path (`level`/`mode` apply to files only)."""
    if name in CORPORA:
        return CORPORA[name](data_dir=data_dir, split=split)
    if os.path.sep in name or os.path.exists(name) or name.endswith(".txt"):
        return load_file(name, level or "char", mode or "sequence")
    close = difflib.get_close_matches(name, list(CORPORA), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise CorpusError(f"unknown dataset {name!r}: {hint}choose one of {sorted(CORPORA)} or give a path to a text file")
