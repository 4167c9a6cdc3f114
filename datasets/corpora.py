"""Named corpora, their fixed splits, and how real corpus files are found.

A corpus is text split into train / val / test, plus how to read it:
- `level`: "char", "word" or "bpe" (which tokenizer; bpe: byte-level BPE learnt from the
  training split, datasets/bpe.py, or loaded from `tokenizer_path`); `text_level` is the
  tokenization sample metrics read text in, fixed per corpus whatever the model's level
  (characters for names and Shakespeare, words for COCO, numbers and files);
- `mode`: "sequence" (one example per line: names, numbers, COCO captions, oracle
  sequences, each with <bos>/<eos> and padding) or "stream" (one long text cut into
  contiguous windows: Shakespeare);
- `fixed_length`: 0 (every corpus but the oracles: an example ends with <eos>) or n > 0
  (`oracle`, `seqgan_oracle`: SeqGAN's protocol, every example is exactly n tokens with no
  end token; datasets.batching.LMData then scores n targets per example and no <eos>, and
  every sampler draws exactly n tokens, never a special token).

Splits (fixed, documented, never drawn from an unseeded RNG):

| corpus | train | val | test |
|---|---|---|---|
| numbers | 80% of 1..9999 (seeded shuffle, seed 42) | 10% | 10% |
| oracle | 10,000 samples of TextDuel's own random LSTM (seed 88; not SeqGAN's oracle) | 2,000 | 2,000 (separate sampling seeds) |
| seqgan_oracle | 10,000 samples of SeqGAN's target LSTM (seqgan_oracle.npz) | 2,000 | 2,000 (separate sampling seeds) |
| names, split=makemore (default) | makemore's train minus its last 1,000 | those last 1,000 of makemore's train | makemore's test: the last 1,000 indices of torch.randperm(32,033) after torch.manual_seed(3407) |
| names, split=dedup | 80% of the 29,494 unique names (seeded shuffle, seed 42) | 10% | 10% |
| shakespeare | characters [0, 85%) | [90%, 100%): nanoGPT's val, unchanged | [85%, 90%), carved from nanoGPT's train |
| coco | image_coco.txt minus 1,000 captions (seeded, seed 42) | those 1,000 | image_coco_test.txt (10,000), also the BLEU references |
| a file of yours | 90% | 5% | 5% (seeded shuffle of lines in sequence mode; contiguous in stream mode) |
| a file with `val_file` / `test_file` | the whole file (less a carved split not given) | val_file, else 5% of the file (seeded) | test_file, else 5% of the file (seeded) |

Text hygiene, for every file read: byte-order marks and control characters other than tab
and newline are removed (counted on stderr); `max_len` drops longer examples (counted);
an example far longer than the rest is refused by datasets.batching.LMData, which names
its file and line.

names.txt holds 2,539 names twice. The makemore split keeps makemore's construction, so
a duplicated name can sit in both train and test (that is makemore's protocol, and the
numbers quoted against it assume it); the dedup split removes duplicates before
splitting, so no name is in two splits.

The two oracle corpora (datasets/oracle.py): `seqgan_oracle` is SeqGAN's real oracle, the
weights of SeqGAN's target LSTM (save/target_params_py3.pkl of the SeqGAN repository,
converted to numpy arrays in seqgan_oracle.npz), so its NLL-oracle is comparable with
published figures (the oracle's own samples score 5.750; MLE 9.038, SeqGAN 8.736). `oracle`
is TextDuel's own random LSTM in SeqGAN's sizes (seed 88): handy offline, but its figures are
not comparable with published NLL-oracle numbers. Both have fixed_length 20.

File resolution for real corpora, in order: an explicit path; the data directory (the
`data_dir` setting, else the TEXTDUEL_DATA_DIR environment variable); the cache
(TEXTDUEL_CACHE_DIR, else ~/.cache/textduel); a download from the canonical URL. Every
file found or downloaded is checked against its sha256. seqgan_oracle.npz has no URL we can
verify a download from: without a copy in the data directory or the cache, loading
`seqgan_oracle` fails with an error that names the file and where to place it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import random
import re
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from datasets import numbers as numbers_mod
from datasets import oracle as oracle_mod
from datasets.bpe import DEFAULT_VOCAB, MIN_VOCAB
from datasets.tokenizers import SPECIALS, TOKENIZERS


@dataclass
class Corpus:
    name: str
    level: str                    # "char" | "word" | "bpe"
    mode: str                     # "sequence" | "stream"
    train: list[str] | str        # lines (sequence mode) or one text (stream mode)
    val: list[str] | str
    test: list[str] | str
    fixed_vocab: list[str] | None = None   # the benchmark's own vocabulary (oracle), else built from train
    lowercase: bool = False
    default_block_size: int = 0            # stream mode: the context length when the user sets none
    extras: dict = field(default_factory=dict)  # e.g. the oracle model, the numbers checker
    min_freq: int = 1                      # vocabulary: training symbols seen fewer times become <unk>
    max_vocab: int = 0                     # vocabulary: the N most frequent training symbols; 0 = all
    sources: dict = field(default_factory=dict)  # split -> (file, line number of each example), files only
    fixed_length: int = 0                  # 0: examples end with <eos>; n > 0: every example is exactly n
                                           # tokens, no end token (the oracles: SeqGAN's protocol, n = 20)
    bpe_vocab_size: int = DEFAULT_VOCAB    # level bpe: the BPE's whole vocabulary (specials, bytes, merges)
    tokenizer_path: str = ""               # level bpe: load this tokenizer instead of learning one
    text_level: str = ""                   # the corpus's own char | word: what BLEU and the judge split text
                                           # into at every level ("" = level)


SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str          # the canonical download URL; "" = none we can verify a download from
    sha256: str
    origin: str = ""  # where a file without a URL comes from, said when it is missing or corrupt


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
    "seqgan_oracle": RemoteFile("seqgan_oracle.npz", "",
                                "45e58e243f4644198f0354d01798d35828efe6cf17603940db694b2096c36775",
                                "the weights of SeqGAN's target LSTM, save/target_params_py3.pkl of "
                                "https://github.com/LantaoYu/SeqGAN (sha256 5ac794a695dd6e0eb2bb689f3dfda55e4e0053e8c0399e6"
                                "242630a95f1e60e8a), converted to numpy arrays without pickle: embedding, Wi Ui bi Wf Uf bf "
                                "Wog Uog bog Wc Uc bc, Wo, bo"),
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


def find_data_dir(data_dir: str | Path | None = None) -> str | Path | None:
    """The data directory: `data_dir` (the data_dir setting), else $TEXTDUEL_DATA_DIR, else None
    (then only the cache is searched, and downloads go there). An empty value counts as not set."""
    return data_dir or os.environ.get("TEXTDUEL_DATA_DIR") or None


def resolve_file(remote: RemoteFile, data_dir: str | None = None, download: bool = True) -> Path:
    """Find `remote` locally (data dir, then cache) or download it into the cache (a file with
    no URL never is)."""
    data_dir = find_data_dir(data_dir)
    source = remote.url or f"a verified copy ({remote.origin})"
    candidates = ([Path(data_dir) / remote.filename] if data_dir else []) + [cache_dir() / remote.filename]
    for path in candidates:
        if path.is_file():
            digest = sha256_of(path)
            if digest != remote.sha256:
                raise CorpusError(f"{path} has sha256 {digest}, expected {remote.sha256}: the file is corrupt or a "
                                  f"different version. Replace it with {source}")
            return path
    where = (f"the data directory {data_dir}" if data_dir else
             "a data directory (pass data_dir=... or set TEXTDUEL_DATA_DIR)")
    if download and remote.url:
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
    if not remote.url:
        raise CorpusError(f"{remote.filename} not found, and it cannot be downloaded from a URL we can verify; place it "
                          f"in {where} or in the cache {cache_dir()}. It is {remote.origin}; sha256 {remote.sha256}")
    raise CorpusError(f"{remote.filename} not found; place it in {where} or in the cache {cache_dir()}")


# Bytes that are never text: a byte-order mark (U+FEFF, at the start of a file saved by some
# editors, or in the middle of files concatenated from several) and the C0/C1 control
# characters (Unicode category Cc) other than tab, newline and carriage return. Left in, each
# becomes a vocabulary symbol (and \x0b, \x0c, \x1c-\x1e, \x85 would even split lines).
_NOT_TEXT = re.compile(r"[\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


_SAID: set[str] = set()


def note(message: str) -> None:
    """What the data layer changed in the user's text or split, said once per process on stderr
    (a frontier or a literature table reads the same corpus for each of its cells)."""
    if message in _SAID:
        return
    _SAID.add(message)
    print(f"note: {message}", file=sys.stderr, flush=True)


def clean_text(text: str) -> tuple[str, Counter]:
    """(text without BOMs and control characters other than tab/newline/CR, what was removed)."""
    removed = Counter(_NOT_TEXT.findall(text))
    return (_NOT_TEXT.sub("", text) if removed else text), removed


def describe_removed(removed: Counter) -> str:
    """'a byte-order mark (U+FEFF) and 3 control characters (U+0007 x2, U+0008 x1)'."""
    boms = removed.get("\ufeff", 0)
    ctrl = {c: n for c, n in removed.items() if c != "\ufeff"}
    parts = [f"{boms} byte-order mark{'s' if boms > 1 else ''} (U+FEFF)"] if boms else []
    if ctrl:
        listed = ", ".join(f"U+{ord(c):04X} x{n}" for c, n in sorted(ctrl.items(), key=lambda kv: -kv[1])[:8])
        parts.append(f"{sum(ctrl.values())} control character{'s' if sum(ctrl.values()) > 1 else ''} ({listed})")
    return " and ".join(parts)


def read_text(path: Path | str, what: str = "corpus file") -> str:
    """Read a UTF-8 text file, refusing missing, empty, binary or undecodable files with a clear
    reason. Byte-order marks and control characters other than tab and newline are removed, and
    how many is said on stderr (they are never text, and would become vocabulary symbols)."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{what} {path} does not exist")
    if path.is_dir():
        raise CorpusError(f"{what} {path} is a directory; give the text file inside it")
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"{what} {path} is empty; it needs at least a few lines of text")
    if b"\x00" in data:
        raise CorpusError(f"{what} {path} contains NUL bytes: it looks binary, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{what} {path} is not valid UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                          "convert it, e.g. `iconv -f latin1 -t utf-8`") from None
    text, removed = clean_text(text)
    if removed:
        note(f"{path}: removed {describe_removed(removed)}")
    return text


def read_lines(path: Path | str, keep_empty: bool = False, what: str = "file") -> list[str]:
    """The lines of a text file (read_text's checks and cleaning), stripped; empty lines are
    dropped unless keep_empty (a samples file, where an empty line is an empty sample)."""
    lines = [line.strip() for line in read_text(path, what).splitlines()]
    return lines if keep_empty else [line for line in lines if line]


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


def _oracle_corpus(name, oracle, s) -> Corpus:
    vocab = [str(i) for i in range(oracle_mod.VOCAB)]
    return Corpus(name, "word", "sequence", s["train"], s["val"], s["test"], fixed_vocab=vocab,
                  extras={"oracle": oracle}, fixed_length=oracle_mod.SEQ_LEN)


def load_oracle(data_dir=None, split=None):
    """TextDuel's own random oracle (seed 88), not SeqGAN's: see datasets/oracle.py."""
    return _oracle_corpus("oracle", *oracle_mod.splits())


def load_seqgan_oracle(data_dir=None, split=None):
    """SeqGAN's oracle, from seqgan_oracle.npz in the data directory or the cache (sha256 checked)."""
    return _oracle_corpus("seqgan_oracle", *oracle_mod.seqgan_splits(resolve_file(FILES["seqgan_oracle"], data_dir)))


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
    train, val = _carve(train_all, 1000)
    return Corpus("coco", "word", "sequence", train, val, test, lowercase=True)


def _carve(items: list, n: int, seed: int = SPLIT_SEED) -> tuple[list, list]:
    """(the rest, n items drawn by a seeded shuffle), both in file order: a split carved from one file."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def _numbered(path, what) -> list[tuple[int, str]]:
    """(line number, stripped line) of every non-empty line: line numbers survive the split,
    so an error about an example can say where it is."""
    return [(i + 1, line.strip()) for i, line in enumerate(read_text(path, what).splitlines()) if line.strip()]


def _check_amount(path, content, mode):
    """Enough text to split: 100 characters of a stream, 20 non-empty lines of sequences."""
    if mode == "stream" and len(content) < 100:
        raise CorpusError(f"{path} has only {len(content)} characters; a stream corpus needs at least 100")
    if mode == "sequence" and len(content) < 20:
        raise CorpusError(f"{path} has {len(content)} non-empty lines; sequence mode needs at least 20 "
                          "(one example per line). For one long text use mode='stream'")


def load_file(path, level="word", mode="sequence", val_file=None, test_file=None):
    """A UTF-8 text file of the user's: lines as sequences, or the whole text as a stream.

    Without val_file and test_file: 90 / 5 / 5 (a seeded shuffle of the lines, or contiguous
    parts of the stream in that order). With them, the file given is all training data and each file given
    is its split; a split not given is carved from the training file (5 %, seeded). Every
    example remembers its file and line number (Corpus.sources) for error messages.
    """
    if level not in LEVELS or mode not in ("sequence", "stream"):
        raise CorpusError(f"level must be one of {', '.join(LEVELS)} and mode 'sequence' or 'stream', got {level!r}, "
                          f"{mode!r}")
    files = {"val": val_file or None, "test": test_file or None}
    if mode == "stream":
        text = read_text(path)
        _check_amount(path, text, mode)
        n = len(text)
        if not any(files.values()):
            a, b = int(0.9 * n), int(0.95 * n)
            return Corpus(str(path), level, mode, text[:a], text[a:b], text[b:], default_block_size=256)
        splits = {s: read_text(f, f"{s}_file") for s, f in files.items() if f}
        cut = n - int(0.05 * n) * sum(1 for f in files.values() if not f)
        missing = [s for s, f in files.items() if not f]
        if missing:  # one split from its file, the other the end of the training text
            splits[missing[0]] = text[cut:]
        return Corpus(str(path), level, mode, text[:cut], splits["val"], splits["test"], default_block_size=256)
    lines = _numbered(path, "corpus file")
    _check_amount(path, lines, mode)
    if not any(files.values()):
        train, val, test = _seeded_split(lines)
        parts = {"train": (path, train), "val": (path, val), "test": (path, test)}
    else:
        parts = {s: (f, _numbered(f, f"{s}_file")) for s, f in files.items() if f}
        rest = lines
        for s in [s for s, f in files.items() if not f]:
            rest, held = _carve(rest, max(1, int(0.05 * len(lines))))
            parts[s] = (path, held)
        parts["train"] = (path, rest)
        for s, (f, items) in parts.items():
            if not items:
                raise CorpusError(f"the {s} split ({f}) has no non-empty lines")
    return Corpus(str(path), level, mode, *([t for _, t in parts[s][1]] for s in SPLITS),
                  sources={s: (str(f), [i for i, _ in items]) for s, (f, items) in parts.items()})


def _as_mode(value, mode):
    """A split in the other layout: lines joined into one text, or one text cut into lines."""
    if mode == "stream":
        return value if isinstance(value, str) else "\n".join(value) + "\n"
    return value if isinstance(value, list) else _lines(value)


def drop_long(corpus: Corpus, max_len: int, split_fn) -> Corpus:
    """Drop examples longer than max_len tokens from every split (sequence mode), saying how many."""
    for s in SPLITS:
        lines = getattr(corpus, s)
        keep = [i for i, line in enumerate(lines) if len(split_fn(line)) <= max_len]
        if len(keep) == len(lines):
            continue
        if not keep:
            raise CorpusError(f"max_len {max_len} drops every {s} example of {corpus.name}; raise it")
        note(f"max_len {max_len}: dropped {len(lines) - len(keep):,} of {len(lines):,} {s} examples of {corpus.name}")
        setattr(corpus, s, [lines[i] for i in keep])
        if s in corpus.sources:
            f, numbers = corpus.sources[s]
            corpus.sources[s] = (f, [numbers[i] for i in keep])
    return corpus


LEVELS = ("char", "word", "bpe")


CORPORA = {
    "numbers": load_numbers,
    "oracle": load_oracle,
    "seqgan_oracle": load_seqgan_oracle,
    "names": load_names,
    "shakespeare": load_shakespeare,
    "coco": load_coco,
}


def looks_like_a_path(name: str) -> bool:
    """A dataset argument that names a file: it exists, or has a folder or an extension in it
    (no corpus name does), so a typo in a file name is reported as a missing file."""
    return os.path.exists(name) or os.path.sep in name or "/" in name or "." in name


def load_corpus(name: str, data_dir: str | None = None, split: str | None = None, level: str | None = None,
                mode: str | None = None, val_file: str | None = None, test_file: str | None = None,
                lowercase: bool = False, min_freq: int = 1, max_vocab: int = 0, max_len: int = 0,
                bpe_vocab_size: int = DEFAULT_VOCAB, tokenizer: str = "") -> Corpus:
    """A registered corpus by name, or a text file by path, read as `DataConfig` describes.

    level and mode default to the corpus's own (a file: word, sequence) and, when given,
    override it (the splits are rejoined or recut for another mode). lowercase, min_freq and
    max_vocab shape a char or word vocabulary, bpe_vocab_size and tokenizer a BPE
    (build_tokenizer); max_len drops longer examples (at bpe level counted in the BPE's
    tokens, the BPE learnt from the whole training split, the dropped lines included).
    """
    if tokenizer and level != "bpe":
        raise CorpusError(f"--tokenizer {tokenizer} loads a BPE tokenizer: give --level bpe with it")
    if name in CORPORA:
        if val_file or test_file:
            raise CorpusError(f"{name!r} is a named corpus with fixed splits; val_file and test_file go with a "
                              "dataset file of yours (--dataset path/to/train.txt)")
        corpus = CORPORA[name](data_dir=data_dir, split=split)
        if level and level != corpus.level and corpus.fixed_vocab is not None:
            raise CorpusError(f"{name} has a fixed {corpus.level}-level vocabulary; level {level!r} does not apply")
        corpus.text_level = corpus.level if level == "bpe" else (level or corpus.level)
        corpus.level = level or corpus.level
        if mode and mode != corpus.mode:
            corpus.train, corpus.val, corpus.test = (_as_mode(getattr(corpus, s), mode) for s in SPLITS)
            corpus.mode = mode
            if mode == "stream":
                corpus.fixed_length = 0  # one text: there are no examples to have a length
    elif looks_like_a_path(name):
        corpus = load_file(name, level or "word", mode or "sequence", val_file, test_file)
        corpus.text_level = "word" if corpus.level == "bpe" else corpus.level
    else:
        close = difflib.get_close_matches(name, list(CORPORA), n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise CorpusError(f"unknown dataset {name!r}: {hint}choose one of {sorted(CORPORA)} or give a path to a "
                          "text file")
    corpus.lowercase = corpus.lowercase or lowercase
    corpus.min_freq, corpus.max_vocab = min_freq, max_vocab
    corpus.bpe_vocab_size, corpus.tokenizer_path = bpe_vocab_size, tokenizer
    if max_len and corpus.mode == "sequence":
        if corpus.level == "bpe":  # learnt once, here; build_tokenizer returns this one
            from datasets.batching import build_tokenizer  # batching imports this module
            split = build_tokenizer(corpus).encode
        else:
            split = TOKENIZERS[corpus.level]([*SPECIALS], lowercase=corpus.lowercase).split
        drop_long(corpus, max_len, split)
    return corpus


@dataclass
class DataConfig:
    """The data settings every tool shares (train_lm, train_gan, compare, score): one definition,
    inherited by each tool's config, so a comparison can hand all of them to every trainer."""

    dataset: str = "numbers"       # a name in datasets.CORPORA, or a path to a UTF-8 text file (all training data
                                   # when val_file and test_file are given; else 90/5/5, seeded)
    split: str = ""                # a named corpus's split variant (names: makemore | dedup)
    level: str = ""                # char | word | bpe; "" = the corpus's own (names, shakespeare: char; numbers,
                                   # oracle, seqgan_oracle, coco: word) and word for a file. bpe: byte-level BPE
                                   # learnt from the training split (never <unk>; datasets/bpe.py)
    mode: str = ""                 # sequence (one example per line) | stream (one long text); "" = the corpus's own,
                                   # sequence for a file
    val_file: str = ""             # your validation file (model selection); "" = 5% carved from the dataset file
    test_file: str = ""            # your test file: NLL-test and the BLEU references; "" = 5% carved from the dataset
    lowercase: bool = False        # lowercase all text before tokenizing (coco always is)
    min_freq: int = 1              # training symbols seen fewer times become <unk>
    max_vocab: int = 0             # keep the N most frequent training symbols (specials not counted); 0 = all
    max_len: int = 0               # sequence mode: drop examples longer than N tokens (says how many); 0 = keep all,
                                   # and an extreme outlier is an error that suggests a value
    bpe_vocab_size: int = DEFAULT_VOCAB  # level bpe: the vocabulary learnt, 4 specials + 256 bytes + merges (a small
                                   # corpus may run out of pairs first)
    tokenizer: str = ""            # level bpe: load this tokenizer instead of learning one: a tokenizer.json, or a
                                   # folder with one or with GPT-2's vocab.json + merges.txt
    batching: str = "length"       # sequence mode: length | random. length: training batches of lines of about one
                                   # length (little padding; the loss over a fixed per-step normaliser); random:
                                   # random batches, each computed as one block (datasets/batching.py)
    data_dir: str = ""             # where real corpora are found (else $TEXTDUEL_DATA_DIR, the cache, download)

    def __post_init__(self):
        if self.batching not in ("length", "random"):
            raise ValueError(f"batching must be length or random, got {self.batching!r}")
        if self.level not in ("", *LEVELS):
            raise ValueError(f"level must be one of {', '.join(LEVELS)} (or empty for the corpus's own), "
                             f"got {self.level!r}")
        if self.bpe_vocab_size < MIN_VOCAB:
            raise ValueError(f"bpe_vocab_size must be at least {MIN_VOCAB} (4 specials + 256 bytes), got "
                             f"{self.bpe_vocab_size}")
        if self.tokenizer and self.level != "bpe":
            raise ValueError(f"tokenizer {self.tokenizer!r} is a BPE tokenizer to load: give level bpe with it")
        if self.mode not in ("", "sequence", "stream"):
            raise ValueError(f"mode must be sequence or stream (or empty for the corpus's own), got {self.mode!r}")
        if self.min_freq < 1 or self.max_vocab < 0 or self.max_len < 0:
            raise ValueError(f"need min_freq >= 1, max_vocab >= 0 and max_len >= 0, got {self.min_freq}, "
                             f"{self.max_vocab}, {self.max_len}")

    def load(self) -> Corpus:
        return load_corpus(self.dataset, data_dir=self.data_dir or None, split=self.split or None,
                           level=self.level or None, mode=self.mode or None, val_file=self.val_file or None,
                           test_file=self.test_file or None, lowercase=self.lowercase, min_freq=self.min_freq,
                           max_vocab=self.max_vocab, max_len=self.max_len, bpe_vocab_size=self.bpe_vocab_size,
                           tokenizer=self.tokenizer)

    def read_with_tokenizer_of(self, folder: str, setting: str) -> None:
        """Level bpe with the tokenizer files of `folder`, a Hugging Face GPT-2 the run starts from
        (given as `setting`); before __post_init__. Another level or tokenizer is refused."""
        if self.level not in ("", "bpe") or (self.tokenizer and Path(self.tokenizer) != Path(folder)):
            raise ValueError(f"{setting} {folder!r} reads text with its own BPE: drop --level and --tokenizer "
                             f"(given: level {self.level!r}, tokenizer {self.tokenizer!r})")
        self.level, self.tokenizer = "bpe", folder

    def data_settings(self) -> dict:
        """The settings that decide the examples and the vocabulary (where the files are found does not)."""
        return {f.name: getattr(self, f.name) for f in fields(DataConfig) if f.name != "data_dir"}

    @staticmethod
    def from_settings(values: dict) -> "DataConfig":
        """The data settings of a stored run config (config.json's train section), older runs included."""
        return DataConfig(**{f.name: values[f.name] for f in fields(DataConfig) if f.name in values})
