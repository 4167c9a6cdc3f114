"""Turning a tokenized corpus into training and evaluation batches.

Two layouts:
- sequence mode, one example per sequence: x = [<bos>, t1 .. tn, <pad> ...] and
  y = [t1 .. tn, <eos>, -1 ...]; the targets at padding are IGNORE_INDEX, so every loss
  and NLL is per real token (the <eos> included, as in makemore), never per pad.
  On a fixed-length corpus (Corpus.fixed_length = n > 0, the oracles: SeqGAN's protocol)
  every example is exactly n tokens and has no end token: x = [<bos>, t1 .. t_{n-1}],
  y = [t1 .. tn], n targets and no <eos> target, block_size n.
- stream mode (character LM on Shakespeare): windows of block_size tokens cut from one
  long token stream, y = x shifted by one.

Training batches are a pure function of (seed, step): sequence mode walks a fresh seeded
permutation every epoch, stream mode draws offsets from a generator seeded by the step.
So a resumed run sees exactly the batches the uninterrupted run would have seen, and
every rank of a distributed run can compute the same global batch and take its shard.
Evaluation batches are a fixed, complete, ordered pass over a split.
"""

from __future__ import annotations

import torch

from datasets.corpora import Corpus, CorpusError
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, SPECIALS, TOKENIZERS, UNK_ID, Tokenizer


def build_tokenizer(corpus: Corpus) -> Tokenizer:
    """The corpus's tokenizer, its vocabulary from the training split only (or the benchmark's fixed one)."""
    cls = TOKENIZERS[corpus.level]
    if corpus.fixed_vocab is not None:
        return cls(list(SPECIALS) + list(corpus.fixed_vocab), lowercase=corpus.lowercase)
    train = corpus.train if corpus.mode == "sequence" else [corpus.train]
    return cls.fit(train, lowercase=corpus.lowercase, min_freq=corpus.min_freq, max_vocab=corpus.max_vocab)


class SequenceSplit:
    """Padded (N, L) inputs and targets for one split; L = longest example + 1."""

    def __init__(self, lines: list[str], tokenizer: Tokenizer, width: int, encoded: list[list[int]] | None = None,
                 fixed_length: int = 0):
        self.lines = lines
        N = len(lines)
        self.x = torch.full((N, width), PAD_ID, dtype=torch.long)
        self.y = torch.full((N, width), IGNORE_INDEX, dtype=torch.long)
        self.lengths = torch.zeros(N, dtype=torch.long)  # real tokens per example, <eos> included
        for i, ids in enumerate(encoded if encoded is not None else map(tokenizer.encode, lines)):
            if fixed_length:  # exactly fixed_length tokens, no end token: the last token is a target only
                if len(ids) != fixed_length:
                    raise CorpusError(f"example {i + 1} has {len(ids)} tokens; this corpus has fixed-length examples "
                                      f"of exactly {fixed_length}")
                n = fixed_length
                self.x[i, :n] = torch.tensor([BOS_ID] + ids[:-1])
                self.y[i, :n] = torch.tensor(ids)
                self.lengths[i] = n
                continue
            n = len(ids) + 1
            self.x[i, :n] = torch.tensor([BOS_ID] + ids)
            self.y[i, :n] = torch.tensor(ids + [EOS_ID])
            self.lengths[i] = n

    def __len__(self):
        return self.x.size(0)

    def rows(self, idx):
        """Rows idx, trimmed to the longest among them (less compute on padding)."""
        idx = torch.as_tensor(idx)
        w = int(self.lengths[idx].max())
        return self.x[idx, :w], self.y[idx, :w]


def unk_share(ids: list[int]) -> float:
    """Share of token ids that are <unk>."""
    return sum(1 for i in ids if i == UNK_ID) / max(len(ids), 1)


def oov_rate(tokenizer: Tokenizer, texts: list[str] | str) -> float:
    """Out-of-vocabulary rate: the share of the texts' tokens that encode as <unk>."""
    return unk_share([i for t in ([texts] if isinstance(texts, str) else texts) for i in tokenizer.encode(t)])


class StreamSplit:
    def __init__(self, text: str, tokenizer: Tokenizer, block_size: int):
        self.tokens = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        self.block_size = block_size
        if len(self.tokens) < block_size + 1:
            raise CorpusError(f"a split of {len(self.tokens)} tokens is shorter than block_size + 1 = {block_size + 1}; "
                              "use a smaller block_size or a longer text")

    def windows(self, offsets):
        T = self.block_size
        x = torch.stack([self.tokens[o:o + T] for o in offsets])         # (B, T)
        y = torch.stack([self.tokens[o + 1:o + T + 1] for o in offsets])  # (B, T)
        return x, y


# An automatic block_size is refused above this many tokens, or when the longest example is more
# than OUTLIER_RATIO times the 99.9th-percentile length (and longer than OUTLIER_FLOOR): one
# stray overlong line would otherwise set the context, and the cost of every step, for all.
MAX_AUTO_BLOCK = 2048
OUTLIER_RATIO, OUTLIER_FLOOR = 4, 64


def typical_length(lengths: list[int]) -> int:
    """The 99.9th-percentile length, leaving out at least the single longest example (for a
    file of under 1,000 lines the plain percentile would be that longest example itself)."""
    ordered = sorted(lengths)
    return ordered[max(0, len(ordered) - 1 - max(1, len(ordered) // 1000))]


def check_lengths(corpus: Corpus, lengths: dict[str, list[int]]) -> None:
    """Refuse an automatic block_size set by an outlier, naming the example and the two fixes."""
    pooled = [n for s in lengths.values() for n in s]
    longest = max(pooled)
    typical = typical_length(pooled)
    limit = min(MAX_AUTO_BLOCK - 1, max(OUTLIER_RATIO * typical, OUTLIER_FLOOR))
    if longest <= limit:
        return
    split, i = next((s, i) for s, ns in lengths.items() for i, n in enumerate(ns) if n == longest)
    where = f"{split} example {i + 1}"
    if split in corpus.sources:
        f, numbers = corpus.sources[split]
        where = f"{f}, line {numbers[i]} ({split} split)"
    too_long = sum(n > limit for n in pooled)
    raise CorpusError(
        f"{where} has {longest:,} {corpus.level}-level tokens, while 99.9% of the examples have at most {typical:,}: "
        f"the automatic block_size would be {longest + 1:,} (refused above {MAX_AUTO_BLOCK:,} tokens or "
        f"{OUTLIER_RATIO}x the typical length), and every step would pay for it. Drop such examples with "
        f"--max_len {limit} ({too_long:,} example{'s' if too_long > 1 else ''} longer), or keep them with "
        f"--block_size {longest + 1}")


def _check_fixed_length(corpus: Corpus, lengths: dict[str, list[int]], n: int) -> None:
    """Every example of a fixed-length corpus has exactly n tokens; else say which does not."""
    for split, ns in lengths.items():
        for i, k in enumerate(ns):
            if k != n:
                where = f"{split} example {i + 1}"
                if split in corpus.sources:
                    f, numbers = corpus.sources[split]
                    where = f"{f}, line {numbers[i]} ({split} split)"
                raise CorpusError(f"{where} of {corpus.name} has {k} tokens; its examples are all exactly {n} "
                                  "tokens long (fixed_length, no end token)")


class LMData:
    """All three splits of a corpus, tokenized, with deterministic batch schedules.

    `oov` holds each split's out-of-vocabulary rate: the share of its tokens (<eos> not
    counted) that encode as <unk> under the training split's vocabulary. `fixed_length` is
    the corpus's (0 in stream mode): what every sampler of a model of this data must be told
    (experiments.generation.lm_texts / gan_texts).
    """

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, block_size: int = 0):
        self.corpus, self.tokenizer, self.mode = corpus, tokenizer, corpus.mode
        self.fixed_length = corpus.fixed_length if corpus.mode == "sequence" else 0
        names = ("train", "val", "test")
        if corpus.mode == "sequence":
            encoded = {s: [tokenizer.encode(line) for line in getattr(corpus, s)] for s in names}
            lengths = {s: [len(ids) for ids in encoded[s]] for s in names}
            longest = {s: max(lengths[s]) for s in names}
            if self.fixed_length:
                _check_fixed_length(corpus, lengths, self.fixed_length)
            need = self.fixed_length or max(longest.values()) + 1  # + <bos> (inputs) or + <eos> (targets)
            if block_size and block_size < need and self.fixed_length:
                raise CorpusError(f"every example of {corpus.name} has exactly {self.fixed_length} tokens (no end "
                                  f"token), so it needs block_size >= {need}, but block_size = {block_size}. Raise "
                                  "block_size, or leave it 0 to size it from the data")
            if block_size and block_size < need:
                split = max(longest, key=longest.get)
                raise CorpusError(f"the longest {split} example of {corpus.name} has {longest[split]} tokens, so it needs "
                                  f"block_size >= {need}, but block_size = {block_size}. Raise block_size (or leave it 0 "
                                  "to size it from the data), or drop longer examples with --max_len; examples are "
                                  "never truncated silently")
            if not block_size:
                check_lengths(corpus, lengths)
            self.block_size = block_size or need
            self.splits = {s: SequenceSplit(getattr(corpus, s), tokenizer, self.block_size, encoded[s],
                                            self.fixed_length) for s in names}
            self.oov = {s: unk_share([i for ids in encoded[s] for i in ids]) for s in names}
        else:
            self.block_size = block_size or corpus.default_block_size
            self.splits = {s: StreamSplit(getattr(corpus, s), tokenizer, self.block_size) for s in names}
            self.oov = {s: unk_share(self.splits[s].tokens.tolist()) for s in names}

    def n_tokens(self, split: str) -> int:
        """Target tokens in a split (what an NLL pass over it scores)."""
        s = self.splits[split]
        return int(s.lengths.sum()) if self.mode == "sequence" else len(s.tokens) - 1

    def oov_summary(self) -> str:
        """'out-of-vocabulary val 1.2%, test 1.5%'."""
        return f"out-of-vocabulary val {self.oov['val']:.1%}, test {self.oov['test']:.1%}"

    def train_batch(self, step: int, batch_size: int, seed: int):
        """The global training batch of `step` (pure function of seed and step)."""
        split = self.splits["train"]
        if self.mode == "stream":
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            offsets = torch.randint(len(split.tokens) - self.block_size - 1 + 1, (batch_size,), generator=g)
            return split.windows(offsets.tolist())
        N = len(split)
        start = step * batch_size
        idx = []
        while len(idx) < batch_size:  # a batch may span the end of one epoch and the start of the next
            epoch, pos = divmod(start + len(idx), N)
            perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            idx.extend(perm[pos:pos + batch_size - len(idx)].tolist())
        return split.rows(idx)

    def eval_batches(self, split: str, batch_size: int):
        """A complete pass over a split in a fixed order: every token is scored once."""
        s = self.splits[split]
        if self.mode == "stream":
            T = self.block_size
            # non-overlapping windows; the last window is aligned to the end so no token is skipped
            starts = list(range(0, len(s.tokens) - T, T))
            last = len(s.tokens) - T - 1
            for i in range(0, len(starts), batch_size):
                offs = starts[i:i + batch_size]
                x, y = s.windows(offs)
                yield x, y
            covered = starts[-1] + T if starts else 0  # token index of the last target scored so far
            if covered < len(s.tokens) - 1:
                # one more window aligned to the end; mask the targets already scored
                x, y = s.windows([last])
                y = y.clone()
                y[:, : covered - last] = IGNORE_INDEX  # y[:, j] is token last + 1 + j
                yield x, y
        else:
            for i in range(0, len(s), batch_size):
                yield s.rows(list(range(i, min(i + batch_size, len(s)))))
