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
permutation every epoch (a batch may span two epochs), stream mode draws offsets from a
generator seeded by the step. So a resumed run sees exactly the batches the uninterrupted
run would have seen, and every rank of a distributed run can compute the same global batch
and take its rows (x[rank::world]: equal shares).

How a sequence-mode step is computed (`batching`):
- "length" (the default): the batch's rows sorted by length and cut into micro-batches of
  at most `micro_tokens` positions (a sixth of the batch's mean tokens), each trimmed to its
  own longest row (`micro_batches`), so a step computes little padding (computed / real
  tokens 1.04-1.12 on COCO and a messages corpus with a long tail, against 1.8 and 3.0 for
  the batch as one block). The batch's composition is the random one: batches of lines of
  one length (fairseq's `batch_by_size`, Hugging Face's `LengthGroupedSampler`) were
  measured to train worse here (COCO, GPT-2 2 x 128, batch 64, seed 1, validation NLL at step
  750: 3.488 for batches of one length, 3.443 for random batches as one block, 3.442 for
  random batches in sorted micro-batches), since every row of such a batch ends at one
  position. The step's objective is the summed token loss over a fixed normaliser,
  `batch_size` x the mean target tokens of a training line (`step_settings`), so a token
  weighs the same whichever lines it was batched with, and the split into micro-batches
  does not change the gradient.
- "random": the batch as one block trimmed to its longest row, its loss the mean over its
  real tokens. A model whose training forward normalises by batch
  statistics (BatchNorm; a VAE's free bits on the batch-mean KL) always trains this way
  (`whole_batches`): statistics of a micro-batch of lines of one length are skewed. So does
  data whose random batches pad little anyway (at most MICRO_MIN_PADDING: numbers 1.11, the
  oracles' fixed-length lines 1.0), where more, smaller steps would only cost time.
Evaluation batches are a fixed, complete pass over a split, in order of length (so a batch
pads little); an NLL is a sum over tokens, so the order changes it only by float rounding.
"""

from __future__ import annotations

import dataclasses

import torch

from datasets.bpe import corpus_tokenizer
from datasets.corpora import Corpus, CorpusError
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, SPECIALS, TOKENIZERS, UNK_ID, Tokenizer


def build_tokenizer(corpus: Corpus) -> Tokenizer:
    """The corpus's tokenizer, its vocabulary from the training split only (or the benchmark's fixed
    one; at bpe level the BPE learnt from it, or the one corpus.tokenizer_path holds)."""
    if corpus.level == "bpe":  # learnt once per corpus (load_corpus may have learnt it for max_len)
        if "bpe" not in corpus.extras:
            try:
                corpus.extras["bpe"] = corpus_tokenizer(corpus)
            except (OSError, ValueError) as e:  # a tokenizer file missing, unreadable or of another pipeline
                if not corpus.tokenizer_path:
                    raise
                raise CorpusError(f"tokenizer {corpus.tokenizer_path}: {e}") from None
        return corpus.extras["bpe"]
    cls = TOKENIZERS[corpus.level]
    if corpus.fixed_vocab is not None:
        return cls(list(SPECIALS) + list(corpus.fixed_vocab), lowercase=corpus.lowercase)
    train = corpus.train if corpus.mode == "sequence" else [corpus.train]
    return cls.fit(train, lowercase=corpus.lowercase, min_freq=corpus.min_freq, max_vocab=corpus.max_vocab)


def reference_tokenizer(corpus: Corpus) -> Tokenizer:
    """What sample metrics (BLEU, Self-BLEU, distinct-n) and the judge split text into: the corpus's
    own tokenizer at char or word level; at bpe level its text level (words for COCO or a file,
    characters for names), so the same strings score the same whatever the model's level, and
    never in a model's subword pieces."""
    if corpus.level != "bpe":
        return build_tokenizer(corpus)
    return build_tokenizer(dataclasses.replace(corpus, level=corpus.text_level or "word", extras={}))

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
        for rows in micro_batches(self.lengths, batch_size * EVAL_ROW_TOKENS, max_rows=batch_size):
            yield self.rows(rows)


EVAL_ROW_TOKENS = 32  # an evaluation batch holds at most batch_size x this many positions
BATCHINGS = ("length", "random")
MICRO_SHARE = 6  # a training micro-batch holds at most 1/MICRO_SHARE of a batch's mean positions
MICRO_MIN_PADDING = 1.15  # ... and data whose random batches pad less than this is computed whole


def micro_batches(lengths: torch.Tensor, budget: int, max_rows: int | None = None) -> list[torch.Tensor]:
    """Row indices by ascending length (ties in row order), in groups of at most `budget` positions
    (rows x the group's longest row) and at most `max_rows` rows; at least one row each. A training
    batch's micro-batches, and (with max_rows) the evaluation batches of a whole split."""
    order = torch.argsort(lengths, stable=True)
    ls = lengths[order].tolist()
    cap = max_rows or len(ls)
    groups, start = [], 0
    while start < len(order):
        end = start + 1  # sorted ascending: a group is as wide as its last row
        while end < len(order) and end - start < cap and (end - start + 1) * ls[end] <= budget:
            end += 1
        groups.append(order[start:end])
        start = end
    return groups

def encode_lines(tokenizer, lines: list[str]) -> list[list[int]]:
    """`[tokenizer.encode(line) for line in lines]`, in one batch where the tokenizer has one (a BPE's
    encode_batch runs in Hugging Face's Rust)."""
    batch = getattr(tokenizer, "encode_batch", None)
    return batch(list(lines)) if batch else [tokenizer.encode(line) for line in lines]


def byte_texts(corpus: Corpus, split: str) -> list[str] | None:
    """What bits per byte divides by on a split (scoring.nll.bits_per_byte): its cleaned lines,
    lowercased where set (a stream split is one text). None on a corpus with a fixed vocabulary
    (the oracles: token ids, no text)."""
    if corpus.fixed_vocab is not None:
        return None
    lines = getattr(corpus, split)
    lines = [lines] if isinstance(lines, str) else lines
    return [t.lower() for t in lines] if corpus.lowercase else list(lines)


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
    (experiments.generators.generation.lm_texts / gan_texts).
    """

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, block_size: int = 0, batching: str = "length"):
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
        self.corpus, self.tokenizer, self.mode = corpus, tokenizer, corpus.mode
        self.fixed_length = corpus.fixed_length if corpus.mode == "sequence" else 0
        self.batching = batching if corpus.mode == "sequence" else "random"  # stream windows: no padding
        self.why_whole = ""  # why batches are computed whole although batching = "length" (whole_batches)
        self._perm = (None, None)  # the last epoch's permutation, by (epoch, seed)
        self._micro = {}  # batch_size -> micro_tokens (None: whole), decided once
        names = ("train", "val", "test")
        if corpus.mode == "sequence":
            encoded = {s: encode_lines(tokenizer, getattr(corpus, s)) for s in names}
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

    def byte_texts(self, split: str) -> list[str] | None:
        return byte_texts(self.corpus, split)

    def oov_summary(self) -> str:
        """'out-of-vocabulary val 1.2%, test 1.5%'."""
        return f"out-of-vocabulary val {self.oov['val']:.1%}, test {self.oov['test']:.1%}"

    def whole_batches(self, why: str) -> None:
        """Compute every step as one block, its loss the batch's token mean, for the reason given (a
        model that normalises by batch statistics); batching_summary says it."""
        if self.batching == "length":
            self.batching, self.why_whole, self._micro = "random", why, {}

    def batch_rows(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Sequence mode: the training-split rows of `step`'s global batch (pure function of seed and step)."""
        N = len(self.splits["train"])
        start = step * batch_size
        idx = []
        while len(idx) < batch_size:  # a batch may span the end of one epoch and the start of the next
            epoch, pos = divmod(start + len(idx), N)
            if self._perm[0] != (epoch, seed):
                self._perm = ((epoch, seed), torch.randperm(N, generator=torch.Generator().manual_seed(
                    seed * 1_000_003 + epoch)))
            idx.extend(self._perm[1][pos:pos + batch_size - len(idx)].tolist())
        return torch.tensor(idx)

    def train_batch(self, step: int, batch_size: int, seed: int):
        """The global training batch of `step` (pure function of seed and step), trimmed to its longest row."""
        split = self.splits["train"]
        if self.mode == "stream":
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            offsets = torch.randint(len(split.tokens) - self.block_size - 1 + 1, (batch_size,), generator=g)
            return split.windows(offsets.tolist())
        return split.rows(self.batch_rows(step, batch_size, seed))

    def _epoch_batches(self, batch_size: int, seed: int) -> list[torch.Tensor]:
        """The row lengths of one epoch of training batches (at least one batch)."""
        lengths = self.splits["train"].lengths
        return [lengths[self.batch_rows(s, batch_size, seed)] for s in range(max(len(lengths) // batch_size, 1))]

    def micro_tokens(self, batch_size: int) -> int | None:
        """Positions per training micro-batch under batching = "length" (a sixth of a batch's mean
        positions), or None: the step computed whole ("random", stream mode, or data whose random
        batches pad at most MICRO_MIN_PADDING)."""
        if self.batching != "length":
            return None
        if batch_size not in self._micro:
            whole = self.padding_share(batch_size, seed=0, batching="random")
            mean = self.n_tokens("train") / len(self.splits["train"])
            self._micro[batch_size] = (None if whole <= MICRO_MIN_PADDING else
                                       max(1, round(batch_size * mean / MICRO_SHARE)))
        return self._micro[batch_size]

    def step_settings(self, batch_size: int) -> dict:
        """mle_step's keyword arguments for this data's training steps: `normalizer`, the fixed number
        the summed token loss is divided by under batching = "length" (batch_size x the mean target
        tokens of a training line; None: the batch's own token count, the per-batch mean), and
        `micro_tokens` (see micro_tokens)."""
        if self.batching != "length":
            return {"normalizer": None, "micro_tokens": None}
        return {"normalizer": batch_size * self.n_tokens("train") / len(self.splits["train"]),
                "micro_tokens": self.micro_tokens(batch_size)}

    def padding_share(self, batch_size: int, seed: int, batching: str | None = None) -> float:
        """Computed / real tokens over one epoch of training steps (1.0 in stream mode), as this data
        computes them or as `batching` would (the whole batch for "random")."""
        if self.mode == "stream":
            return 1.0
        budget = self.micro_tokens(batch_size) if (batching or self.batching) == "length" else None
        computed = real = 0
        for lengths in self._epoch_batches(batch_size, seed):
            real += int(lengths.sum())
            groups = micro_batches(lengths, budget) if budget else [torch.arange(len(lengths))]
            computed += sum(len(g) * int(lengths[g].max()) for g in groups)
        return computed / max(real, 1)

    def batching_summary(self, batch_size: int, seed: int) -> str:
        """'random batches of 64 in length-sorted micro-batches of at most 88 positions: padding share
        1.05 (computed / real tokens; as one block 1.80)'."""
        if self.mode == "stream":
            return f"stream windows of {self.block_size} tokens: no padding"
        share = self.padding_share(batch_size, seed)
        budget = self.micro_tokens(batch_size)
        if budget is None:
            why = (f" ({self.why_whole})" if self.why_whole else
                   f" (they pad at most {MICRO_MIN_PADDING:g} whole)" if self.batching == "length" else "")
            return f"random batches of {batch_size}, each step computed whole{why}: padding share {share:.2f} " \
                   "(computed / real tokens)"
        return (f"random batches of {batch_size} in length-sorted micro-batches of at most {budget} positions: "
                f"padding share {share:.2f} (computed / real tokens; as one block "
                f"{self.padding_share(batch_size, seed, 'random'):.2f})")

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
