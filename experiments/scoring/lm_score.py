"""LM score and reverse LM score: sample quality and coverage judged by trained LMs.

- LM score (de Masson d'Autume et al. 2019, "Training Language GANs from Scratch"
  (ScratchGAN); Caccia et al. 2020, "Language GANs Falling Short"): the NLL of the samples
  under a language model trained on the real training data. Low means the samples look
  like the data. It is blind to diversity: a generator that repeats one typical sentence
  scores very well.
- Reverse LM score (same papers): train a language model on the samples, then take its
  NLL on the real test data. Low means the samples cover the data; a generator that drops
  modes leaves the reverse LM unable to explain part of the test set, and poor samples
  teach it the wrong language. Read the two together.

How the scorer LMs read text (`ScorerText`): every text, real or generated, in one
canonical form: the corpus's own tokenization joined again (words and punctuation marks
separated by single spaces at word level, lowercased where the data is; the characters at
character level), so a word model's detokenised "don ' t" is scored against the real
"don ' t", not against a raw "don't". The scorer LMs read that text as byte-level BPE
(datasets/bpe.py, `ScorerConfig.vocab_size` symbols, trained on the canonical training
split), so their cost does not grow with the corpus's word count, and the scores are in
bits per byte (`bits_per_byte`): the summed NLL in bits over the texts, divided by their
UTF-8 bytes plus one per text for its end. The synthetic oracles keep their own fixed
vocabulary (5,000 ids, no text): there the scores stay in nats per token.

Both language models are small GPT-2s (baselines/gpt2.py) trained in-process for a fixed
budget (`ScorerConfig`) with the trainer's own parts: LMData's batches in length-sorted micro-batches,
AdamW with weight decay on 2-D weights, warmup and cosine decay, gradient clipping,
lm_nll. The checkpoint kept is the one with the lowest NLL on the real VALIDATION split,
never the test split. Figures are comparable within one comparison (same data, budget and
sample count), not across papers, whose scorer LMs are far larger.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass

import torch

from baselines.gpt2 import GPT, GPTConfig
from datasets.batching import LMData, SequenceSplit, encode_lines
from datasets.bpe import MIN_VOCAB, BPETokenizer
from datasets.corpora import Corpus
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, Tokenizer
from experiments.core import runtime
from experiments.core.session import Guard, mle_step
from experiments.scoring.nll import bits_per_byte, lm_nll


@dataclass
class ScorerConfig:
    n_layer: int = 2              # the scorer GPT-2's blocks
    n_head: int = 4
    n_embd: int = 64
    vocab_size: int = 2048        # the scorer LMs' byte-level BPE (text corpora; the oracles keep their own ids)
    dropout: float = 0.1          # the reverse LM sees only a few thousand samples: regularise
    steps: int = 500              # fixed optimizer-step budget for each scorer LM
    reverse_steps: int = 0        # ... but the reverse LM's (0 = steps): it fits a few thousand samples, one
                                  # per scored point, so a frontier of many points may give it fewer
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    val_interval: int = 100       # steps between validation passes (real val) for checkpoint selection
    train_seed: int = 0           # init, dropout and batch order

    def __post_init__(self):
        if self.reverse_steps < 0:
            raise ValueError(f"ScorerConfig.reverse_steps must be >= 0 (0 = steps), got {self.reverse_steps}")
        for name in ("n_layer", "n_head", "n_embd", "steps", "batch_size", "val_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ScorerConfig.{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size < MIN_VOCAB:
            raise ValueError(f"ScorerConfig.vocab_size must be >= {MIN_VOCAB} (the 4 specials and 256 bytes), "
                             f"got {self.vocab_size}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")


def needed_block_size(tokenizer: Tokenizer, *text_lists) -> int:
    """Context a GPT-2 needs to score every text given: longest + 1 (<bos> or <eos>)."""
    return max(len(tokenizer.encode(t)) for texts in text_lists for t in texts) + 1


def scorer_block_size(tokenizer: Tokenizer, canon: Corpus) -> int:
    """The LM-score GPT-2's context: twice what the longest real text needs, plus one (LMScorer)."""
    return 2 * needed_block_size(tokenizer, canon.train, canon.val, canon.test) + 1


def scorer_model(tokenizer: Tokenizer, block_size: int, cfg: ScorerConfig, device):
    """A freshly initialised scorer GPT-2 of these settings and its AdamW (init from the current RNG)."""
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout)).to(device)
    return model, runtime.make_optimizer(model, cfg.lr, cfg.weight_decay, (0.9, 0.99), device)


def fit_gpt2(train_texts, val_texts, tokenizer: Tokenizer, block_size: int, cfg: ScorerConfig,
             device) -> GPT:
    """A small GPT-2 trained on train_texts for cfg.steps; the best state on val_texts is returned."""
    if len(train_texts) == 0 or len(val_texts) == 0:
        raise ValueError("fit_gpt2 needs training and validation texts")
    corpus = Corpus("scorer", tokenizer.level, "sequence", list(train_texts), list(val_texts), list(val_texts))
    data = LMData(corpus, tokenizer, block_size=block_size)
    device = torch.device(device)
    # model init and dropout from train_seed, inside a fork of the RNG (CPU and this CUDA device),
    # so that the caller's random streams are untouched
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.train_seed)
        model, optimizer = scorer_model(tokenizer, block_size, cfg, device)
        best_val, best_state = math.inf, None
        guard = Guard(advice=f"Lower the scorer's learning rate (--scorer.lr, now {cfg.lr})")
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = runtime.lr_at(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
            x, y = data.train_batch(step, cfg.batch_size, cfg.train_seed)
            mle_step(model, optimizer, x, y, guard, step, grad_clip=1.0,
                     **data.step_settings(cfg.batch_size))
            if (step + 1) % cfg.val_interval == 0 or step + 1 == cfg.steps:
                val = lm_nll(model, data.eval_batches("val", 256), device)["nll"]
                if val < best_val:  # a NaN val never is: the guard stops a diverging fit first
                    best_val, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval()


def texts_nll(model, tokenizer: Tokenizer, texts, device, batch_size: int = 256) -> dict:
    """lm_nll of a list of texts (one sequence each, padding excluded) under model. A text longer
    than the model's context (a sample may be: the LM-score GPT-2 is sized from the real lines,
    and a byte-level model's noise can spell a short sample in many pieces) is scored in
    windows (`window_rows`), each of its tokens once."""
    ids = encode_lines(tokenizer, texts)
    fits = [i for i, x in enumerate(ids) if len(x) + 1 <= model.block_size]
    split = SequenceSplit([texts[i] for i in fits], tokenizer, model.block_size, [ids[i] for i in fits])
    windows = [row for i, x in enumerate(ids) if len(x) + 1 > model.block_size
               for row in window_rows(x, model.block_size)]
    wide = [(torch.stack([x for x, _ in windows[k:k + batch_size]]), torch.stack([y for _, y in windows[k:k + batch_size]]))
            for k in range(0, len(windows), batch_size)]
    return lm_nll(model, itertools.chain(split.batches(batch_size) if fits else [], wide), device)


def window_rows(ids: list[int], context: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) rows, each `context` wide, of one text longer than the context: windows every
    context // 2 tokens, each scoring only the targets the windows before it did not, so every
    token is scored once and with at least half a context before it (or all there is): the
    strided evaluation of fixed-context LMs on long texts (Hugging Face's perplexity guide)."""
    x_all, y_all = [BOS_ID] + ids, ids + [EOS_ID]
    n, stride = len(y_all), max(context // 2, 1)
    rows, done, end = [], 0, context
    while done < n:
        end = min(end, n)
        start = max(end - context, 0)
        y = list(y_all[start:end])
        y[:done - start] = [IGNORE_INDEX] * (done - start)
        rows.append((torch.tensor(x_all[start:end]), torch.tensor(y)))
        done, end = end, end + stride
    return rows

class ScorerText:
    """How the scorer LMs read text: one canonical form for every text, one tokenizer, one unit
    (the module docstring). `source` is the comparison's tokenizer (experiments.scoring.samples.
    SampleTokenizer: a literal "<unk>" in a sample stays one symbol)."""

    def __init__(self, corpus: Corpus, source, cfg: ScorerConfig, state: dict | None = None):
        self.source, self.fixed = source, corpus.fixed_vocab is not None
        if self.fixed:  # the oracles: token ids, no text to canonicalise
            self.tokenizer, self.unit = source, "nats per token"
        elif state is not None:  # a cached judge's (experiments/scoring/judge.py)
            self.tokenizer, self.unit = BPETokenizer.from_state(state["tokenizer"]), state["unit"]
        else:
            self.tokenizer = BPETokenizer.fit([self.canonical(t) for t in corpus.train], vocab_size=cfg.vocab_size)
            self.unit = "bits per byte"

    def canonical(self, text: str) -> str:
        return text if self.fixed else self.source.base.join(self.source.split(text))

    def texts(self, texts) -> list[str]:
        return [self.canonical(t) for t in texts]

    def corpus(self, corpus: Corpus) -> Corpus:
        """The corpus's three splits in canonical form (what the scorer LMs train, select and test on)."""
        return Corpus(corpus.name, self.tokenizer.level, "sequence", self.texts(corpus.train), self.texts(corpus.val),
                      self.texts(corpus.test))

    def score(self, model, texts, device) -> float:
        """The texts' NLL under model in this unit (texts already canonical)."""
        nll = texts_nll(model, self.tokenizer, texts, device)
        return nll["nll"] if self.fixed else bits_per_byte(nll["nll"] * nll["tokens"], texts)

    def state_dict(self) -> dict:
        return {"tokenizer": self.tokenizer.state_dict() if not self.fixed else None, "unit": self.unit}


class LMScorer:
    """A GPT-2 trained once on the real training split (selected on val), in `text`'s canonical
    form; scores sample sets.

    Its context is twice what the longest real text needs, plus one: a sample may spell its
    words in more BPE pieces than any real line (rare words), or run to a generator's full
    length without an <eos>; positions beyond the real lines' are never trained.
    """

    def __init__(self, corpus: Corpus, text: ScorerText, cfg: ScorerConfig, device, state: dict | None = None):
        self.text, self.device = text, device
        canon = text.corpus(corpus)
        block = scorer_block_size(text.tokenizer, canon)
        if state is None:
            self.model = fit_gpt2(canon.train, canon.val, text.tokenizer, block, cfg, device)
        else:  # a cached fit (experiments/scoring/judge.py)
            self.model = GPT(GPTConfig(**state["config"])).to(device)
            self.model.load_state_dict(state["model"])
            self.model.eval()

    def state_dict(self) -> dict:
        return {"config": dataclasses.asdict(self.model.config), "model": self.model.state_dict()}

    def __call__(self, samples) -> float:
        return lm_score(samples, self)


def lm_score(samples, scorer: LMScorer) -> float:
    """NLL of the samples under the real-data LM (bits per byte, or nats per token on the oracles; <eos> included)."""
    return scorer.text.score(scorer.model, scorer.text.texts(samples), scorer.device)


def reverse_lm_score(samples, corpus: Corpus, text: ScorerText, cfg: ScorerConfig, device) -> float:
    """NLL on the real test split (bits per byte, or nats per token on the oracles) of a GPT-2
    trained on the samples, selected on real val."""
    canon, samples = text.corpus(corpus), text.texts(samples)
    block = needed_block_size(text.tokenizer, samples, canon.val, canon.test)
    cfg = dataclasses.replace(cfg, steps=cfg.reverse_steps or cfg.steps)
    model = fit_gpt2(samples, canon.val, text.tokenizer, block, cfg, device)
    return text.score(model, canon.test, device)
