"""Byte-level BPE tokenizer (Hugging Face `tokenizers`), with TextDuel's four specials.

Byte-pair encoding (Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare
Words with Subword Units") starts from single symbols and repeatedly merges the most
frequent adjacent pair. This is GPT-2's byte-level variant (Radford et al. 2019,
"Language Models are Unsupervised Multitask Learners"): the symbols are the 256 UTF-8
bytes, so every string is encodable, nothing is ever <unk>, and `decode(encode(t)) == t`
for any text (after lowercasing where set). The text is first cut by GPT-2's regex
(`ByteLevel(use_regex=True)`, the default: contractions, letter runs, digit runs,
punctuation runs, whitespace, each with at most one leading space), so a merge never
crosses from a word into punctuation. No prefix space is added and no normaliser runs;
lowercasing (`lowercase=True`) is done in Python before encoding, as in
datasets/tokenizers.py.

Ids. TextDuel's ids 0-3 are <pad>, <bos>, <eos>, <unk> (datasets/tokenizers.py). The
Hugging Face tokenizer itself has no special or added tokens at all, and TextDuel's id
is its id + 4:

    0-3                 <pad> <bos> <eos> <unk>   (never produced by `encode`)
    4 .. 259            the 256 bytes (GPT-2's printable stand-ins: " " shows as "Ġ")
    260 .. vocab_size-1 the merges, in the order they were learnt

Keeping the specials out of Hugging Face's vocabulary is what makes a literal "<eos>",
"<pad>" or "<|endoftext|>" inside a text ordinary bytes: it can never be matched as a
special token, so corpus text cannot forge an end of sequence, and the specials keep the
same ids as in every other TextDuel vocabulary. `vocab_size` counts all of it (4 + 256 +
merges), so `fit(texts, vocab_size=2048)` learns up to 1,788 merges; a corpus with fewer
distinct pairs stops earlier and the vocabulary is smaller than asked.

Determinism. `fit` feeds the texts to `train_from_iterator` in the order given (pass the
training split only). Hugging Face's trainer numbers the 256 bytes in the code-point order of
their stand-ins, sums pair counts (a sum: the order in which threads count does not
matter) and breaks ties between equally frequent pairs by the pair's ids, never by hash
or thread order; so the same texts and settings give a byte-identical tokenizer.json in
fresh processes and with any number of threads (RAYON_NUM_THREADS=1 or the default;
tests/test_bpe.py checks both, with no sorting or post-processing needed). `state_dict()`
holds Hugging Face's JSON, so a checkpoint that stores it is read back (`from_state()`)
with exactly the vocabulary and merges it was trained with.

Loading an existing tokenizer (`BPETokenizer.load_any`, `--tokenizer PATH`): a tokenizer.json
written here, a Hugging Face tokenizer.json of a GPT-2 (its `<|endoftext|>` added token and
a post-processor that changes no ids, ByteLevel or a bare template, are dropped: the entry stays in the
vocabulary as an ordinary symbol that `encode` never produces, since no merge makes it), or
a folder with GPT-2's `vocab.json` + `merges.txt`. Any other pipeline (a normaliser, a
prefix space, another model) is refused with what differs, since it would break the round
trip.

Threads: `encode_batch` and `fit` use Hugging Face's thread pool (RAYON_NUM_THREADS caps
it). If the process forks after using it (DataLoader workers), Hugging Face disables it
in the children with a warning; set TOKENIZERS_PARALLELISM=false to silence that.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID

N_SPECIALS = len(SPECIALS)  # TextDuel id = Hugging Face id + N_SPECIALS
MIN_VOCAB = N_SPECIALS + 256  # the specials and every byte: the smallest byte-level vocabulary
TOKENIZER_FILE = "tokenizer.json"  # the name `save` gives the file inside a folder
GPT2_FILES = ("vocab.json", "merges.txt")  # GPT-2's own pair (Hugging Face's slow tokenizer files)
DEFAULT_VOCAB = 4096  # --bpe_vocab_size when none is given: 4 specials + 256 bytes + 3,836 merges


def _surrogate_error(texts) -> Exception:
    """The error for text that Python holds but UTF-8 cannot encode (lone surrogates)."""
    for n, t in enumerate(texts):
        which = "the text" if len(texts) == 1 else f"text {n}"
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            return ValueError(f"{which} is not valid Unicode at character {e.start} ({t[e.start]!r}, a lone "
                              "surrogate): it has no UTF-8 bytes to encode; fix the text (e.g. read files with "
                              "errors='replace')")
        except AttributeError:
            return TypeError(f"{which} is a {type(t).__name__}, not a str")
    return ValueError("Hugging Face refused to encode the text")


class BPETokenizer:
    """Byte-level BPE with TextDuel's specials in front; same surface as datasets.tokenizers.Tokenizer."""

    level = "bpe"

    def __init__(self, tokenizer_json: str, lowercase: bool = False):
        """Wrap a Hugging Face tokenizer.json (a string) that has this module's pipeline."""
        _check_pipeline(json.loads(tokenizer_json))
        hf = HFTokenizer.from_str(tokenizer_json)
        if hf.get_added_tokens_decoder():
            raise ValueError("the Hugging Face tokenizer has special/added tokens; TextDuel's BPE keeps its specials "
                             "outside Hugging Face's vocabulary (ids 0-3, the rest shifted by 4), so literal text like "
                             "'<eos>' is always bytes; remove the added tokens")
        n = hf.get_vocab_size(with_added_tokens=False)
        vocab = hf.get_vocab(with_added_tokens=False)
        if sorted(vocab.values()) != list(range(n)):
            raise ValueError("the Hugging Face vocabulary's ids are not 0..n-1 without gaps")
        missing = set(pre_tokenizers.ByteLevel.alphabet()) - set(vocab)
        if missing:
            raise ValueError(f"the vocabulary lacks {len(missing)} of the 256 byte symbols, so some text could not be "
                             "encoded; train with initial_alphabet=ByteLevel.alphabet()")
        hf_itos = [None] * n
        for s, i in vocab.items():
            hf_itos[i] = s
        clash = set(hf_itos).intersection(SPECIALS)
        if clash:
            raise ValueError(f"Hugging Face tokens {sorted(clash)} are spelt like TextDuel's specials (two symbols, "
                             "one string)")
        self._hf = hf
        self.itos = list(SPECIALS) + hf_itos
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.lowercase = bool(lowercase)

    @classmethod
    def fit(cls, texts, vocab_size: int = 2048, lowercase: bool = False) -> "BPETokenizer":
        """Learn merges from training texts only (the train split), fed in the order given.

        vocab_size: TextDuel's whole vocabulary, the 4 specials + 256 bytes + merges, so at
        least 260 (which learns no merges). A small corpus may run out of pairs to merge
        first; the vocabulary is then smaller than asked."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings (one per example), not a single str")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < MIN_VOCAB:
            raise ValueError(f"vocab_size={vocab_size} is too small for byte-level BPE: it counts the "
                             f"{N_SPECIALS} specials + 256 bytes + merges, so it must be at least {MIN_VOCAB}")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # use_regex=True: GPT-2's regex
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - N_SPECIALS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, always
                                      special_tokens=[], show_progress=False)
        hf.train_from_iterator((t.lower() for t in texts) if lowercase else texts, trainer=trainer)
        return cls(hf.to_str(), lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def _prep(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def encode(self, text: str) -> list[int]:
        """Text to ids (4 .. vocab_size-1; never a special)."""
        try:
            ids = self._hf.encode(self._prep(text), add_special_tokens=False).ids
        except TypeError:
            raise _surrogate_error([text]) from None
        return [i + N_SPECIALS for i in ids]

    def encode_batch(self, texts) -> list[list[int]]:
        """`[encode(t) for t in texts]`, computed by Hugging Face in parallel."""
        texts = [self._prep(t) for t in texts]
        try:
            encs = self._hf.encode_batch_fast(texts, add_special_tokens=False)  # ids only, no offsets: faster
        except TypeError:
            raise _surrogate_error(texts) from None
        return [[i + N_SPECIALS for i in e.ids] for e in encs]

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        """Ids to text; stops at <eos>, drops <pad> and <bos>, shows <unk> as the text "<unk>".

        Bytes are joined across dropped specials; a byte sequence that is not valid UTF-8
        (possible in sampled ids, never in encoded text) decodes with U+FFFD."""
        out, run = [], []  # finished text pieces; the current run of Hugging Face ids
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
            if i == EOS_ID and stop_at_eos:
                break
            if i in (PAD_ID, BOS_ID, EOS_ID):
                continue
            if i == UNK_ID:
                out += [self._hf.decode(run), self.itos[UNK_ID]]
                run = []
                continue
            run.append(i - N_SPECIALS)
        out.append(self._hf.decode(run))
        return "".join(out)

    def split(self, text: str) -> list[str]:
        """The token strings of `encode(text)`, as Hugging Face shows them (bytes as GPT-2's stand-ins)."""
        try:
            return self._hf.encode(self._prep(text), add_special_tokens=False).tokens
        except TypeError:
            raise _surrogate_error([text]) from None

    def n_bytes(self, text: str) -> int:
        """UTF-8 bytes of the text as encoded (after lowercasing where set): the denominator of bits per byte."""
        try:
            return len(self._prep(text).encode("utf-8"))
        except UnicodeEncodeError:
            raise _surrogate_error([text]) from None

    def state_dict(self) -> dict:
        return {"level": self.level, "tokenizer_json": self._hf.to_str(), "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict) -> "BPETokenizer":
        if state.get("level") != cls.level:
            raise ValueError(f"not a BPE tokenizer state: level {state.get('level')!r}, expected {cls.level!r}")
        return cls(state["tokenizer_json"], lowercase=state.get("lowercase", False))

    def to_json(self) -> str:
        """Hugging Face's tokenizer.json, as `save` writes it."""
        return self._hf.to_str(pretty=True)

    def save(self, path) -> Path:
        """Write Hugging Face's tokenizer.json (to `path`, or to path/tokenizer.json if path is a folder).

        `lowercase` is not in that file (there is no normaliser): pass it again to `load`."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path, lowercase: bool = False) -> "BPETokenizer":
        """Read a tokenizer.json written by `save` (a file, or a folder holding tokenizer.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        return cls(path.read_text(encoding="utf-8"), lowercase=lowercase)

    @classmethod
    def load_any(cls, path, lowercase: bool = False) -> "BPETokenizer":
        """A tokenizer.json (this module's, or a Hugging Face GPT-2's), or a folder holding one or
        GPT-2's vocab.json + merges.txt (the module docstring)."""
        path = Path(path)
        if path.is_dir() and not (path / TOKENIZER_FILE).is_file():
            vocab, merges = (path / name for name in GPT2_FILES)
            if not (vocab.is_file() and merges.is_file()):
                raise FileNotFoundError(f"{path} holds neither {TOKENIZER_FILE} nor GPT-2's {' + '.join(GPT2_FILES)}: "
                                        "give the tokenizer's file or the folder that holds it")
            hf = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            hf.decoder = decoders.ByteLevel()
            return cls(hf.to_str(), lowercase=lowercase)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}: give a {TOKENIZER_FILE}, or a folder with one or "
                                    f"with GPT-2's {' + '.join(GPT2_FILES)}")
        return cls(json.dumps(_as_plain(json.loads(path.read_text(encoding="utf-8")))), lowercase=lowercase)

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"


def corpus_tokenizer(corpus) -> BPETokenizer:
    """The BPE of a corpus read at level bpe: loaded from corpus.tokenizer_path when given, else
    learnt from the training split alone with corpus.bpe_vocab_size symbols."""
    if corpus.tokenizer_path:
        return BPETokenizer.load_any(corpus.tokenizer_path, lowercase=corpus.lowercase)
    train = corpus.train if corpus.mode == "sequence" else [corpus.train]
    return BPETokenizer.fit(train, vocab_size=corpus.bpe_vocab_size, lowercase=corpus.lowercase)


def _as_plain(spec: dict) -> dict:
    """A Hugging Face GPT-2 tokenizer.json as this module's pipeline: added tokens that are also
    vocabulary entries (GPT-2's <|endoftext|>) become ordinary symbols, and a post-processor that
    changes no ids (ByteLevel: offsets only; a template of the text alone, as transformers 5
    writes) goes; anything else is left for _check_pipeline to refuse."""
    vocab = (spec.get("model") or {}).get("vocab") or {}
    added = spec.get("added_tokens") or []
    stray = [t["content"] for t in added if vocab.get(t["content"]) != t["id"]]
    if stray:
        raise ValueError(f"the tokenizer.json has added tokens outside its BPE vocabulary ({stray[:5]}); TextDuel's "
                         "BPE keeps its specials outside Hugging Face's vocabulary: remove them")
    spec = {**spec, "added_tokens": []}
    post = spec.get("post_processor") or {}
    plain_template = (post.get("type") == "TemplateProcessing" and not post.get("special_tokens")
                      and [list(p) for p in post.get("single", [])] == [["Sequence"]])
    if post.get("type") == "ByteLevel" or plain_template:  # offsets only, or a template that adds nothing
        spec["post_processor"] = None
    return spec


def _check_pipeline(spec: dict):
    """Refuse a tokenizer.json whose pipeline is not this module's (it would break the round trip)."""
    pre, dec, model = spec.get("pre_tokenizer") or {}, spec.get("decoder") or {}, spec.get("model") or {}
    problems = []
    if model.get("type") != "BPE":
        problems.append(f"model {model.get('type')!r} (expected 'BPE')")
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        problems.append(f"pre_tokenizer {pre} (expected ByteLevel, add_prefix_space=false, use_regex=true)")
    if dec.get("type") != "ByteLevel":
        problems.append(f"decoder {dec.get('type')!r} (expected 'ByteLevel')")
    if model.get("dropout"):
        problems.append(f"BPE dropout {model['dropout']} (encoding would be random)")
    for key in ("normalizer", "post_processor", "truncation", "padding"):
        if spec.get(key) is not None:
            problems.append(f"a {key} (expected none)")
    if problems:
        raise ValueError("not a TextDuel byte-level BPE tokenizer.json: " + "; ".join(problems))
