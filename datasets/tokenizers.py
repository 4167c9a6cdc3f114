"""Character- and word-level tokenizers with a deterministic vocabulary.

Every vocabulary starts with the same four special tokens, so their ids are constants
that models, batching and metrics can rely on:

    0 <pad>  padding (inputs only; its targets are IGNORE_INDEX)
    1 <bos>  start of a sequence (the first input, never a target)
    2 <eos>  end of a sequence (the last target; sampling stops on it)
    3 <unk>  a symbol that was not in the training split

The rest of the vocabulary is the training split's symbols in sorted order, so the ids
depend only on the set of symbols, not on file order or hash seeds. The vocabulary is
a plain list of strings, saved with every checkpoint (`state_dict()` / `from_state()`).
"""

from __future__ import annotations

import re
from collections import Counter

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_IDS = (PAD_ID, BOS_ID, EOS_ID, UNK_ID)  # what a fixed-length sampler never draws
# targets at padding positions; every loss and NLL in TextDuel ignores this value
IGNORE_INDEX = -1

# words, and each punctuation mark on its own; whitespace is the separator
_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class Tokenizer:
    """Shared vocabulary handling; subclasses define how text splits into symbols."""

    level = "base"

    def __init__(self, symbols: list[str], lowercase: bool = False):
        symbols = list(symbols)
        if list(symbols[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"vocabulary must start with the special tokens {SPECIALS}")
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"vocabulary has duplicate symbols (two symbols, one id): {dupes[:10]}")
        self.itos = symbols
        self.stoi = {s: i for i, s in enumerate(symbols)}
        self.lowercase = lowercase

    @classmethod
    def fit(cls, texts, lowercase: bool = False, min_freq: int = 1, max_vocab: int = 0) -> "Tokenizer":
        """Build the vocabulary from training texts only (call it on the train split).

        min_freq: symbols seen fewer times are left out (they encode as <unk>).
        max_vocab: keep only the max_vocab most frequent symbols (the four specials not
        counted; ties broken by the symbol's sort order, so the result is deterministic).
        The kept symbols are stored in sorted order, as always."""
        tmp = cls(list(SPECIALS), lowercase=lowercase)
        counts = Counter()
        for text in texts:
            counts.update(tmp.split(text))
        clash = set(counts).intersection(SPECIALS)
        if clash:
            raise ValueError(f"the corpus contains the reserved symbols {sorted(clash)}; "
                             "rename them in the text before training")
        kept = [s for s in counts if counts[s] >= min_freq]
        if max_vocab and len(kept) > max_vocab:
            kept = sorted(kept, key=lambda s: (-counts[s], s))[:max_vocab]
        return cls(list(SPECIALS) + sorted(kept), lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, symbols: list[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(s, UNK_ID) for s in self.split(text)]

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        """Ids to text; stops at <eos>, drops <pad> and <bos>, keeps <unk> visible."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID and stop_at_eos:
                break
            if i in (PAD_ID, BOS_ID, EOS_ID):
                continue
            out.append(self.itos[i])
        return self.join(out)

    def state_dict(self) -> dict:
        return {"level": self.level, "itos": list(self.itos), "lowercase": self.lowercase}

    @staticmethod
    def from_state(state: dict) -> "Tokenizer":
        """Any level's tokenizer from its state_dict (a checkpoint's "tokenizer"), byte-level BPE included."""
        if state.get("level") == "bpe":
            from datasets.bpe import BPETokenizer  # bpe.py imports this module's constants
            return BPETokenizer.from_state(state)
        cls = TOKENIZERS.get(state.get("level"))
        if cls is None:
            raise ValueError(f"unknown tokenizer level {state.get('level')!r}; expected one of "
                             f"{sorted([*TOKENIZERS, 'bpe'])}")
        return cls(state["itos"], lowercase=state.get("lowercase", False))

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"


class CharTokenizer(Tokenizer):
    """One symbol per Unicode character (spaces and newlines included)."""

    level = "char"

    def split(self, text):
        return list(text.lower() if self.lowercase else text)

    def join(self, symbols):
        return "".join(symbols)


class WordTokenizer(Tokenizer):
    """Words and punctuation marks as symbols; decoding joins them with single spaces.

    Round trip: `decode(encode(t)) == t` holds for in-vocabulary text whose tokens are
    already separated by single spaces (the form of every word-level corpus here: COCO
    captions, numbers, oracle). Other spacing is normalised, which is documented
    rather than hidden: "a,b" and "a , b" encode to the same ids.
    """

    level = "word"

    def split(self, text):
        return _WORD_RE.findall(text.lower() if self.lowercase else text)

    def join(self, symbols):
        return " ".join(symbols)


TOKENIZERS = {"char": CharTokenizer, "word": WordTokenizer}
