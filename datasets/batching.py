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

Training batches are a pure function of (seed, step), so a resumed run sees exactly the
batches the uninterrupted run would have seen, and every rank of a distributed run can
compute the same global batch and take its rows (x[rank::world]: equal shares).
- sequence mode, `batching = "length"` (the default): length-grouped batches, as fairseq's
  `batch_by_size` and Hugging Face's `LengthGroupedSampler` make them. Each epoch, a
  permutation seeded by (seed, epoch) is cut into pools of POOL_BATCHES batches, each pool is
  sorted by length and cut into batches, and the order of the batches is shuffled with the
  same generator. A batch then holds lines of about one length, so it is trimmed to little
  padding (computed / real tokens about 1.0-1.1 instead of 1.6-2.3 for random batches), and
  its composition changes every epoch. The len(train) % batch_size lines left over are a
  different random few each epoch (drop-last). Since a batch of short lines has fewer tokens
  than one of long lines, the per-batch token mean would weight a token by the lengths of
  its batch-mates; the trainers therefore divide the summed loss by a fixed normaliser,
  `loss_normalizer(batch_size)` = batch_size x the mean target tokens of a training example,
  so every token weighs the same in every step (core/session.mle_step).
- sequence mode, `batching = "random"`: the earlier scheme, kept for comparison: a fresh
  seeded permutation every epoch, walked batch_size lines at a time (a batch may span two
  epochs), each batch's loss the mean over its real tokens. A fixed-length corpus (the
  oracles: no padding to save) and a training split smaller than one batch always batch
  this way.
- stream mode: offsets drawn from a generator seeded by the step.
Evaluation batches are a fixed, complete pass over a split, in order of length (so a batch
pads little); an NLL is a sum over tokens, so the order changes it only by float rounding.
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

    def batches(self, batch_size: int):
        """Every example once, in batches of similar length (shortest first, ties in file order), each
        at most batch_size rows and batch_size x EVAL_ROW_TOKENS positions: the evaluation pass of
        every NLL. (Without the position cap, 256 rows of 195 positions at a 17,796-word vocabulary
        are 3.4 GB of logits.)"""
        order = torch.argsort(self.lengths, stable=True)
        budget = batch_size * EVAL_ROW_TOKENS
        lengths = self.lengths[order].tolist()
        start = 0
        while start < len(order):
            end = start + 1  # sorted ascending: a batch is as wide as its last row
            while end < len(order) and end - start < batch_size and (end - start + 1) * lengths[end] <= budget:
                end += 1
            yield self.rows(order[start:end])
            start = end


EVAL_ROW_TOKENS = 32  # an evaluation batch holds at most batch_size x this many positions
BATCHINGS = ("length", "random")
# batches per sorting pool. Hugging Face's LengthGroupedSampler sorts "megabatches" of 50; 100 halves
# the padding a long tail leaves (datasets/messages.py's corpus, batches of 64: 1.08 against 1.12;
# COCO 1.025 against 1.033), and a pool of 6,400 lines still mixes each batch anew every epoch
POOL_BATCHES = 100


def length_grouped(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of length-grouped batches (index tensors of batch_size rows): a seeded
    permutation (drop-last), sorted by length inside pools of POOL_BATCHES batches, cut into
    batches, the batches in a seeded order."""
    n_batches = len(lengths) // batch_size
    perm = torch.randperm(len(lengths), generator=generator)[:n_batches * batch_size]
    pool = POOL_BATCHES * batch_size
    batches = []
    for start in range(0, len(perm), pool):
        chunk = perm[start:start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(chunk.view(-1, batch_size))
    return [batches[i] for i in torch.randperm(n_batches, generator=generator).tolist()]


def padding_share(lengths: torch.Tensor, batches) -> float:
    """Computed tokens / real tokens over index batches, each trimmed to its longest row."""
    computed = sum(len(b) * int(lengths[b].max()) for b in batches)
    return computed / max(sum(int(lengths[b].sum()) for b in batches), 1)


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


def check_lengths(corpus: Corpus, lengths: dict[str, list[int]], who: str = "") -> None:
    """Refuse an automatic block_size set by an outlier, naming the example and the fixes. `who`
    names a consumer whose context is always sized from the data (the judge's scorer LMs): then
    --block_size is no fix, and the message says so."""
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
    drop = f"--max_len {limit} ({too_long:,} example{'s' if too_long > 1 else ''} longer)"
    head = (f"{where} has {longest:,} {corpus.level}-level tokens, while 99.9% of the examples have at most "
            f"{typical:,}: ")
    if who:
        raise CorpusError(head + f"{who} size their context from the data ({longest + 1:,} tokens; refused above "
                          f"{MAX_AUTO_BLOCK:,} or {OUTLIER_RATIO}x the typical length), and every step would pay for "
                          f"it. Drop such examples with {drop}")
    raise CorpusError(
        head + f"the automatic block_size would be {longest + 1:,} (refused above {MAX_AUTO_BLOCK:,} tokens or "
        f"{OUTLIER_RATIO}x the typical length), and every step would pay for it. Drop such examples with "
        f"{drop}, or keep them with --block_size {longest + 1}")


def check_block_size(corpus: Corpus, lengths: dict[str, list[int]], block_size: int = 0) -> int:
    """The block size sequence-mode data of these example lengths (tokens, <eos> not counted) gets:
    block_size when it fits every example, the data's own need when 0 (outliers refused); else a
    CorpusError that names the fix. Examples are never truncated silently."""
    fixed = corpus.fixed_length
    if fixed:
        _check_fixed_length(corpus, lengths, fixed)
    longest = {s: max(n) for s, n in lengths.items()}
    need = fixed or max(longest.values()) + 1  # + <bos> (inputs) or + <eos> (targets)
    if block_size and block_size < need and fixed:
        raise CorpusError(f"every example of {corpus.name} has exactly {fixed} tokens (no end "
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
    return block_size or need


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

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, block_size: int = 0, batching: str = "length"):
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
        self.corpus, self.tokenizer, self.mode = corpus, tokenizer, corpus.mode
        self.fixed_length = corpus.fixed_length if corpus.mode == "sequence" else 0
        # fixed-length examples have no padding to save: they keep the plain permutation
        self.batching = "random" if self.fixed_length or self.mode == "stream" else batching
        self._epoch = (None, None)  # the last epoch's length-grouped batches, by (epoch, batch_size, seed)
        names = ("train", "val", "test")
        if corpus.mode == "sequence":
            encoded = {s: [tokenizer.encode(line) for line in getattr(corpus, s)] for s in names}
            self.block_size = check_block_size(corpus, {s: [len(ids) for ids in encoded[s]] for s in names}, block_size)
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

    def grouped(self, batch_size: int, batching: str | None = None) -> bool:
        """Whether training batches of this size are length-grouped (see the module docstring);
        `batching` asks about that scheme instead of this data's own."""
        return ((batching or self.batching) == "length" and not self.fixed_length and self.mode == "sequence"
                and len(self.splits["train"]) >= batch_size)

    def batch_rows(self, step: int, batch_size: int, seed: int, batching: str | None = None) -> torch.Tensor:
        """Sequence mode: the training-split rows of `step`'s global batch (pure function of seed and
        step); `batching` overrides this data's scheme (the benchmark compares the two)."""
        N = len(self.splits["train"])
        if self.grouped(batch_size, batching):
            epoch, b = divmod(step, N // batch_size)
            if self._epoch[0] != (epoch, batch_size, seed):
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                self._epoch = ((epoch, batch_size, seed), length_grouped(self.splits["train"].lengths, batch_size, g))
            return self._epoch[1][b]
        start = step * batch_size
        idx = []
        while len(idx) < batch_size:  # a batch may span the end of one epoch and the start of the next
            epoch, pos = divmod(start + len(idx), N)
            perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            idx.extend(perm[pos:pos + batch_size - len(idx)].tolist())
        return torch.tensor(idx)

    def train_batch(self, step: int, batch_size: int, seed: int, batching: str | None = None):
        """The global training batch of `step` (pure function of seed and step); `batching` overrides
        this data's scheme (a discriminator's real batches are random: see the GAN trainers)."""
        split = self.splits["train"]
        if self.mode == "stream":
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            offsets = torch.randint(len(split.tokens) - self.block_size - 1 + 1, (batch_size,), generator=g)
            return split.windows(offsets.tolist())
        return split.rows(self.batch_rows(step, batch_size, seed, batching))

    def loss_normalizer(self, batch_size: int) -> float | None:
        """What a training step divides its summed token loss by: batch_size x the mean target tokens
        of a training example when batches are length-grouped (every token weighs the same in every
        step); None for the batch's own token count (random batches, stream windows: as before)."""
        if not self.grouped(batch_size):
            return None
        return batch_size * self.n_tokens("train") / len(self.splits["train"])

    def padding_share(self, batch_size: int, seed: int, batching: str | None = None) -> float:
        """Computed / real tokens over one epoch of training batches (1.0 in stream mode);
        `batching` asks about that scheme instead of this data's own."""
        if self.mode == "stream":
            return 1.0
        lengths = self.splits["train"].lengths
        steps = max(len(lengths) // batch_size, 1)
        return padding_share(lengths, [self.batch_rows(s, batch_size, seed, batching) for s in range(steps)])

    def batching_summary(self, batch_size: int, seed: int) -> str:
        """'length-grouped batches of 64: padding share 1.02 (computed / real tokens; random batches 2.30)'."""
        if self.mode == "stream":
            return f"stream windows of {self.block_size} tokens: no padding"
        share = self.padding_share(batch_size, seed)
        if not self.grouped(batch_size):
            why = (" (fixed-length examples)" if self.fixed_length else
                   f" (a training split of {len(self.splits['train'])} lines is under one batch)"
                   if self.batching == "length" else "")
            return f"random batches of {batch_size}{why}: padding share {share:.2f} (computed / real tokens)"
        return (f"length-grouped batches of {batch_size}: padding share {share:.2f} (computed / real tokens; "
                f"random batches {self.padding_share(batch_size, seed, 'random'):.2f})")

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
            yield from s.batches(batch_size)
