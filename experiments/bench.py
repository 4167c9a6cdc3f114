"""Speed, measured: every registered language model, GPT-2 at nanoGPT's CPU config, BLEU
against nltk, a 1-thread matmul peak and the word-level MLE step's share of it, padding per
corpus, and the judge's cost.

    python -m experiments.bench                     # the full benchmark (a few minutes on a 2-core CPU)
    python -m experiments.bench --quick true        # a few steps of everything: a smoke test
    python -m experiments.bench --models gpt2,lstm --dtype bfloat16 --compile true --fused true
    python -m experiments.bench --peak false --padding false --judge false --bpe false   # each section has a flag

What each figure is:
- train tok/s, ms/iter: one optimizer step = zero_grad, forward, backward, gradient
  clipping at 1.0, AdamW step (the trainers' own mle_step, guard included), timed over `steps` steps after
  `warmup` untimed ones. Tokens are target tokens, padding excluded. Every model at its
  default size (baselines/<model>.py) on names-like data: vocabulary 30, block 16, batch
  32, lengths uniform in 3..15. The count bigram has no optimizer step: its figure is
  counting (`fit`).
- sample tok/s: baselines.sampling.generate from <bos> for `sample_batch` rows and
  block-1 new tokens with <eos> disabled (so every row runs to the end), with the
  incremental state (`init_cache`: KV cache or recurrent state) and without it
  (re-running the model on the whole prefix at every step); the fastest of 5 runs.
- peak mem: on CUDA, torch.cuda.max_memory_allocated during the training measurement,
  minus what was allocated before. On CPU, the process's peak resident set size during
  it minus the resident size before it: Linux's VmHWM, reset per model through
  /proc/self/clear_refs after a gc and malloc_trim. That includes allocator caching and
  is approximate to ~1 MB. (tracemalloc does not see torch's allocations; where
  /proc is absent, getrusage's ru_maxrss is used, which only shows new peaks.)
- MFU (CUDA only): 6 * N * train tok/s over the GPU's dense bf16 peak from PEAK_BF16
  (N = all parameters; the attention term is left out), for bf16 runs.
- nanoGPT's CPU config: GPT-2 with 4 layers, 4 heads, 128 wide, block 64, batch 12,
  vocabulary 65 (shakespeare-char), dropout 0: the figure people compare against.
- On CUDA the defaults are bf16 autocast, torch.compile and fused AdamW, and a table
  shows each one's effect on nanoGPT's GPU shakespeare-char config (6 layers, 6 heads,
  384 wide, block 256, batch 64): all on, then each one off, then all off. On CPU they
  are off; asking for them prints a note and the benchmark runs without them.
- guided sampling: samples/s of a GPT-2 (2 layers, 64 wide, untrained) on `numbers`, plainly
  and through experiments.generators.guidance's samplers (rejection at gamma 0 and 2, SIR with m = 8),
  with a small discriminator trained on its samples against real numbers (so it tells them
  apart well: the costly case); "candidates" is the candidates drawn per sample kept, rejection's
  burn-in (min(1000, n) candidates that set d_max) included.
- density ratio on a toy: experiments/generators/ratio_check.py at seeds 0, 1, 2: the post-hoc
  discriminator's logit against the true log ratio of two known distributions over 64 texts
  (Spearman), and KL(target || base) against KL(target || SIR with it, m 8, alpha 1), each from
  20,000 samples.
- BLEU: experiments.scoring.metrics.BleuReference (BLEU-2..5 at once) against nltk's
  sentence_bleu called per hypothesis and n (Texygen's loop), on COCO when the data
  directory has it, else on synthetic sentences; nltk is timed on a subset and
  extrapolated. The full comparison, self-BLEU included: python -m experiments.bench_bleu.
- matmul peak (1 thread, fp32): torch.mm of two n x n fp32 matrices with torch.set_num_threads(1)
  (the previous count restored after), n = 512, 1024, 2048 (quick: 256, 512); FLOP/s = 2 n^3 /
  seconds, the best of 3 timings after a warm-up, each timing enough back-to-back products for
  ~2 GFLOP; "best", the highest over the sizes, is the peak that "of peak" below divides by.
- MLE step on messages: the trainers' mle_step (LMData's data.train_batch(step, 32,
  seed) computed as data.step_settings(32) says (length-sorted micro-batches, the fixed normaliser), clipping at 1.0, AdamW from make_optimizer, lr 1e-3)
  of GPT-2 2 x 64 (the judge's scorer size) and 4 x 128, 4 heads, dropout 0, fp32, on one CPU
  thread, `steps` timed after `warmup`, on datasets.messages' generated corpus (seed 0; 10,000
  train, 500 val, 1,000 test lines; lowercased): at word level (WordTokenizer.fit on the training
  lines: every training word, 17,796 ids) and as a byte-level BPE of 2,048 symbols (datasets.bpe
  fitted on the canonical training lines: " ".join of the lowercased word split). train tok/s:
  target tokens (padding excluded) per second, so the two vocabularies count different tokens;
  lines/s (training lines per second) and kB/s (the UTF-8 bytes of those lines' canonical text,
  plus one per line for its end, as bits per byte counts them, per second) compare them. FLOP/s:
  6 * N * train tok/s, N = all parameters (the tied embedding once, position embeddings
  included), attention FLOPs left out; "of peak": that over the matmul peak.
- padding share: per corpus, numbers, names and coco (each where its files are in the data
  directory or the cache; else skipped, and the table says so) and the messages corpus above:
  LMData(corpus, build_tokenizer(corpus)).padding_share(batch, 1337, batching), computed tokens
  (each batch trimmed to its longest row, times its rows) over real tokens (<eos> included), over
  one epoch (len(train) // batch batches) of random batches as one block and in length-sorted micro-batches, at batch 32 and
  64. lines, mean tok, longest: the training split's lines and their tokens (<eos> included;
  names is character level, so its tokens are characters).
- byte-level BPE: BPETokenizer.fit (vocabulary 2,048 and 4,096: specials, bytes, merges) and
  encode_batch of COCO's 9,000 training lines (numbers' in quick mode or without COCO), timed in
  a fresh process with RAYON_NUM_THREADS=1, since Hugging Face's thread pool is sized once.
- judge: the judge's scorer GPT-2 (ScorerConfig() defaults: 2 x 64, 4 heads, dropout 0.1, batch
  64, BPE of 2,048) measured by experiments.scoring.judge.probe_fit on ScorerText's canonical
  splits and BPE, at LMScorer's context (2 x the longest text's tokens + 1), on the bench's device
  and the process's threads, on messages, numbers and COCO (where found; not in quick mode).
  ms/step: the mean of 3 optimizer steps after one warm-up (the batch's making included); val s:
  one lm_nll pass over the real val split; fit N: the estimated seconds of the LM-score fit at N
  steps (N x step + ceil(N / val_interval) x val pass, Judge.plan's estimate); rev N: of one
  reverse-LM fit, made once per row (reverse_steps, or N where it is 0, on num_samples texts, with the same per-step
  figure: so equal to fit N at the default reverse_steps 0); N = 500 (ScorerConfig().steps) and
  100. The word row: the same GPT-2 over the messages corpus's word vocabulary at the old
  LMScorer's context (the longest line + 1), what the judge read before its BPE; the quick mode
  validates it on 32 lines and reports no val pass or estimate.

The machine's load matters: on a shared machine, figures move by tens of percent.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import platform
import random
import resource
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from baselines import MODELS
from baselines.gpt2 import GPT, GPTConfig
from baselines.sampling import generate
from datasets.corpora import cache_dir, find_data_dir
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID
from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.core.session import Guard, mle_step
from experiments.core.budget import timed
from experiments.scoring.metrics import DEFAULT_NS, BleuReference, nltk_bleu_scores

# dense bf16 tensor-core peak, FLOP/s, by a substring of torch.cuda.get_device_name()
# (most specific first). MFU is reported only for GPUs listed here.
PEAK_BF16 = [
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
    ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12),
]


@dataclass
class BenchConfig:
    models: str = ""              # comma-separated names from baselines.MODELS; "" = all of them
    device: str = "auto"          # auto (cuda > mps > cpu) | cpu | cuda | ...
    dtype: str = "auto"           # auto (bf16 autocast on CUDA, fp32 elsewhere) | float32 | bfloat16
    compile: bool | None = None   # torch.compile; None = on CUDA only
    fused: bool | None = None     # fused AdamW; None = on CUDA only
    vocab_size: int = 30          # names-like data for the per-model table
    block_size: int = 16
    batch_size: int = 32
    sample_batch: int = 32        # rows sampled at once
    steps: int = 20               # timed training steps per measurement
    warmup: int = 3               # untimed steps first (more when compiling)
    effects: bool = True          # CUDA: the bf16 / compile / fused AdamW table
    bleu: bool = True
    guided: bool = True           # discriminator-guided sampling's cost against plain sampling
    ratio: bool = True            # the post-hoc discriminator's density ratio on an enumerable toy, and SIR with it
    peak: bool = True             # the 1-thread fp32 matmul peak and the word-level MLE step's share of it
    padding: bool = True          # padding share of batches as one block and in length-sorted micro-batches, per corpus
    judge: bool = True            # the judge's scorer GPT-2: seconds per step and per fit
    bpe: bool = True              # byte-level BPE: learning it from COCO's training lines and encoding them, 1 thread
    data_dir: str = ""            # COCO for the BLEU timing (else $TEXTDUEL_DATA_DIR, the download cache, synthetic)
    quick: bool = False           # a few steps of everything (tests/test_bench.py)
    seed: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "batch_size", "sample_batch", "steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BenchConfig.{name} must be positive, got {getattr(self, name)}; set --{name} > 0")
        if self.vocab_size < 5 or self.block_size < 4:
            raise ValueError("need vocab_size >= 5 (4 special tokens) and block_size >= 4")
        unknown = [m for m in self.model_names() if m not in MODELS]
        if unknown:
            import difflib
            hints = {m: difflib.get_close_matches(m, list(MODELS), n=1) for m in unknown}
            raise ValueError("unknown model(s) " + ", ".join(f"{m!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                                                         for m, h in hints.items())
                             + f"; choose from {sorted(MODELS)}")

    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()] or list(MODELS)


# ---------------------------------------------------------------------------- measuring

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of the work inside `with`, in bytes (see the module docstring)."""

    def __init__(self, device):
        self.device, self.bytes = device, 0

    @staticmethod
    def _status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(f"{key} not in /proc/self/status")

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so it is not reused unseen
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
            self.base, self.proc = self._status("VmRSS"), True
        except OSError:
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
            self.base, self.proc, self.scale = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, False, scale
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.base
        elif self.proc:
            self.bytes = self._status("VmHWM") - self.base
        else:
            self.bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * self.scale - self.base
        return False


def names_like_batches(n, batch_size, block_size, vocab_size, seed):
    """The trainer's sequence format: x = [<bos>, t1..tn, <pad>...], y = [t1..tn, <eos>, -1...]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lengths = torch.randint(3, block_size, (batch_size,), generator=g)  # real tokens, <eos> excluded
        x = torch.full((batch_size, block_size), PAD_ID)
        y = torch.full((batch_size, block_size), IGNORE_INDEX)
        for b, L in enumerate(lengths.tolist()):
            t = torch.randint(4, vocab_size, (L,), generator=g)
            x[b, 0], x[b, 1:L + 1] = BOS_ID, t
            y[b, :L], y[b, L] = t, EOS_ID
        out.append((x, y))
    return out


def stream_batches(n, batch_size, block_size, vocab_size, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t = torch.randint(0, vocab_size, (batch_size, block_size + 1), generator=g)
        out.append((t[:, :-1], t[:, 1:]))
    return out


def train_speed(model, batches, cfg, setup):
    """(target tokens per second, ms per step, peak bytes) of the trainer's optimizer step."""
    device, dtype = setup["device"], setup["dtype"]
    batches = [(x.to(device), y.to(device), int((y != IGNORE_INDEX).sum())) for x, y in batches]
    with PeakMemory(device) as mem:
        if getattr(model, "closed_form", False):  # the count bigram: counting is its training
            def step(x, y):
                model.fit([(x, y)])
        else:
            optimizer = runtime.make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), device, fused=setup["fused"])
            fwd = torch.compile(model) if setup["compile"] else model
            guard = Guard(advice="the benchmark's random batches should never diverge; report it")

            def step(x, y):  # the trainers' own step (experiments/core/session.py), guard and all
                mle_step(model, optimizer, x, y, guard, 0, grad_clip=1.0, train_model=fwd,
                         amp=lambda: runtime.autocast(device, dtype))
        model.train()
        warmup = cfg.warmup + (10 if setup["compile"] and not cfg.quick else 0)  # compiling happens here
        for i in range(warmup):
            step(*batches[i % len(batches)][:2])
        sync(device)
        tokens, t0 = 0, time.perf_counter()
        for i in range(cfg.steps):
            x, y, n = batches[i % len(batches)]
            step(x, y)
            tokens += n
        sync(device)
        dt = time.perf_counter() - t0
    return tokens / dt, 1000 * dt / cfg.steps, mem.bytes


def sample_speed(model, rows, new_tokens, setup, use_cache, repeats):
    """Sampled tokens per second (<eos> disabled, so every row produces new_tokens); the
    fastest of `repeats` runs, since one run is short and a shared machine is noisy."""
    device = setup["device"]
    start = torch.full((rows, 1), BOS_ID, dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    best = math.inf
    with runtime.autocast(device, setup["dtype"]):
        generate(model, start, 2, eos_id=None, use_cache=use_cache, generator=g)  # warm up
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            out = generate(model, start, new_tokens, eos_id=None, use_cache=use_cache, generator=g)
            sync(device)
            best = min(best, time.perf_counter() - t0)
    return rows * (out.size(1) - 1) / best


def mfu(n_params, tokens_per_sec, setup):
    """Model FLOPs utilisation, or None where the peak is unknown (CPU, fp32, unlisted GPU)."""
    if setup["device"].type != "cuda" or setup["dtype"] != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(setup["device"])
    peak = next((p for key, p in PEAK_BF16 if key in name), None)
    return None if peak is None else 6 * n_params * tokens_per_sec / peak


def build(name, vocab_size, block_size, seed, device, **sizes):
    model_cls, config_cls = MODELS[name]
    torch.manual_seed(seed)
    return model_cls(config_cls(vocab_size=vocab_size, block_size=block_size, **sizes)).to(device)


def gpt2_throughput(sizes, vocab_size, block_size, batch_size, cfg, setup):
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, dropout=0.0, **sizes)).to(setup["device"])
    batches = stream_batches(4, batch_size, block_size, vocab_size, cfg.seed)
    tok_s, ms, mem = train_speed(model, batches, cfg, setup)
    return {"params": sum(p.numel() for p in model.parameters()), "tokens_per_sec": tok_s, "ms_per_iter": ms,
            "peak_bytes": mem, "mfu": mfu(sum(p.numel() for p in model.parameters()), tok_s, setup)}


def ratio_section(cfg, results) -> None:
    """experiments/generators/ratio_check.py at seeds 0, 1, 2 (quick: seed 0, a few steps: a smoke test)."""
    import dataclasses
    from experiments.generators.ratio_check import GUIDE, ratio_check
    guide = dataclasses.replace(GUIDE, steps=40, eval_interval=20) if cfg.quick else GUIDE
    seeds, samples = ((0,), 2000) if cfg.quick else ((0, 1, 2), 20000)
    results["ratio"] = [ratio_check(seed=s, samples=samples, guide=guide) for s in seeds]
    print(f"\nDensity ratio on a toy (64 texts of 3 symbols from 4; D trained by the post-hoc training; SIR m 8, "
          f"alpha 1; {samples:,} samples per distribution):")
    for s, r in zip(seeds, results["ratio"]):
        print(f"  seed {s}: Spearman(d, log p/q) {r['spearman']:.3f}; KL(p || base) {r['kl_base']:.3f}, KL(p || SIR) "
              f"{r['kl_sir']:.3f} ({r['kl_sir'] / r['kl_base']:.2f} x); held-out AUC {r['val_auc']:.3f}, step "
              f"{r['best_step']} of {r['steps']}")


# ---------------------------------------------------------------------------- BLEU

def guided_speed(cfg, device) -> list[dict]:
    """Plain and discriminator-guided sampling of one small GPT-2: samples/s and candidates per sample."""
    from datasets import LMData, build_tokenizer, load_corpus
    from experiments.generators.families import LMSampler
    from experiments.generators.guidance import GuideConfig, GuidedSampler, train_guide
    corpus = load_corpus("numbers")
    tokenizer = build_tokenizer(corpus)
    data = LMData(corpus, tokenizer)
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=data.block_size, n_layer=2, n_head=4,
                          n_embd=64)).to(device).eval()
    base = LMSampler(model, tokenizer, data, device, {})
    n = 50 if cfg.quick else 500
    D, _ = train_guide(base, corpus.train, GuideConfig(samples=4 * n, val_samples=n, steps=20 if cfg.quick else 300,
                                                       eval_interval=10 if cfg.quick else 100, n_layer=1), device)
    base.sample(n, seed=cfg.seed + 1)  # warm-up, untimed
    rows = []
    for label, sampler in (("plain", base), ("DRS, gamma 0", GuidedSampler(base, D, "drs", 0.0, device=device)),
                           ("DRS, gamma 2", GuidedSampler(base, D, "drs", 2.0, device=device)),
                           ("SIR, alpha 1, m 8", GuidedSampler(base, D, "sir", 1.0, m=8, device=device))):
        _, seconds = timed(sampler.sample, n, seed=cfg.seed)
        rows.append({"sampler": label, "samples_per_sec": n / seconds,
                     "candidates": sampler.stats.cost if label != "plain" else 1.0})
    return rows


def bleu_speed(cfg):
    import nltk.translate.bleu_score  # noqa: F401  (its ~1 s import is not part of nltk's timed figure)

    data_dir = data_dir_of(cfg)
    coco = (data_dir / "image_coco.txt", data_dir / "image_coco_test.txt")
    if not cfg.quick and all(p.is_file() for p in coco):
        hyps = [line.split() for line in coco[0].read_text(encoding="utf-8").splitlines()][:2000]
        refs = [line.split() for line in coco[1].read_text(encoding="utf-8").splitlines()]
        source, n_nltk = f"COCO ({data_dir})", 10
    else:
        rng = random.Random(cfg.seed)
        words = [f"w{i}" for i in range(300)]
        sentence = lambda: [rng.choice(words) for _ in range(rng.randint(6, 14))]  # noqa: E731
        n_refs, n_hyps = (200, 20) if cfg.quick else (5000, 1000)
        refs, hyps = [sentence() for _ in range(n_refs)], [sentence() for _ in range(n_hyps)]
        source, n_nltk = "synthetic sentences (no COCO in the data directory)", 3 if cfg.quick else 10
    table, t_build = timed(BleuReference, refs, max(DEFAULT_NS))
    _, t_score = timed(table.corpus_scores, hyps, DEFAULT_NS)
    subset = hyps[:n_nltk]
    theirs, t_nltk = timed(lambda: [nltk_bleu_scores(refs, h) for h in subset])
    ours = [table.sentence_scores(h, DEFAULT_NS) for h in subset]
    diff = max(abs(a[n] - b[n]) for a, b in zip(ours, theirs) for n in DEFAULT_NS)
    t_nltk_all = t_nltk * len(hyps) / len(subset)
    return {"source": source, "refs": len(refs), "hyps": len(hyps), "n_nltk": len(subset), "build_s": t_build,
            "score_s": t_score, "nltk_s_measured": t_nltk, "nltk_s_extrapolated": t_nltk_all,
            "speedup": t_nltk_all / (t_build + t_score), "max_abs_diff": diff}


# ---------------------------------------------------------------------------- peak, word-level MLE, padding, judge

MESSAGES_SEED = 0                        # datasets.messages' language and message streams
MESSAGES_LINES = (10_000, 500, 1_000)    # train, val, test lines of the generated corpus
PADDING_BATCHES = (32, 64)
PADDING_SEED = 1337
# the shipped corpora of the padding table, each with the datasets.corpora.FILES entries it reads
PADDING_CORPORA = {"numbers": (), "names": ("names",), "coco": ("coco_train", "coco_test")}
# GPT-2 sizes of the MLE table: the judge's scorer, and nanoGPT's CPU config
MLE_SIZES = (dict(n_layer=2, n_head=4, n_embd=64), dict(n_layer=4, n_head=4, n_embd=128))
MLE_BATCH = 32
BPE_VOCAB = 2048


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n inside the block, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def matmul_peak(sizes, repeats: int = 3) -> dict[int, float]:
    """{n: FLOP/s} of a square fp32 n x n matmul on one CPU thread: 2 n^3 over the best of
    `repeats` timings (each of enough back-to-back products to last ~2 GFLOP), after a warm-up."""
    out = {}
    g = torch.Generator().manual_seed(0)
    with torch_threads(1):
        for n in sizes:
            a, b, c = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g), torch.empty(n, n)
            reps = max(1, 2**30 // n**3)  # short products are repeated, so the timer's resolution does not matter
            torch.mm(a, b, out=c)
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(reps):
                    torch.mm(a, b, out=c)
                best = min(best, (time.perf_counter() - t0) / reps)
            out[n] = 2 * n**3 / best
    return out


def messages_corpus():
    """datasets.messages' generated corpus, lowercased word level: MESSAGES_LINES lines from the
    train, val and test streams of the language of MESSAGES_SEED."""
    from datasets import messages
    from datasets.corpora import Corpus
    n_train, n_val, n_test = MESSAGES_LINES
    return Corpus("messages", "word", "sequence", messages.generate(n_train, MESSAGES_SEED),
                  messages.generate(n_val, MESSAGES_SEED, split="val"),
                  messages.generate(n_test, MESSAGES_SEED, split="test"), lowercase=True)


def mle_speed(data, sizes, batch_size, line_bytes, cfg) -> dict:
    """A GPT-2 of `sizes` over data's vocabulary: the trainers' own MLE step (mle_step with
    data's loss normaliser, clipping at 1.0, AdamW) on one CPU thread, fp32, dropout 0, timed over
    cfg.steps steps of data.train_batch after cfg.warmup. line_bytes[i]: the bytes of training line i."""
    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=data.block_size, dropout=0.0, **sizes))
    optimizer = runtime.make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), device)
    guard = Guard(advice="the benchmark's messages batches should never diverge; report it")
    settings = data.step_settings(batch_size)
    n_steps = cfg.warmup + cfg.steps
    batches = [data.train_batch(s, batch_size, cfg.seed) for s in range(n_steps)]  # made before the clock starts
    n_bytes = sum(int(line_bytes[data.batch_rows(s, batch_size, cfg.seed)].sum()) for s in range(cfg.warmup, n_steps))
    model.train()
    with torch_threads(1):
        for s in range(cfg.warmup):
            mle_step(model, optimizer, *batches[s], guard, s, grad_clip=1.0, **settings)
        tokens, t0 = 0, time.perf_counter()
        for s in range(cfg.warmup, n_steps):
            tokens += mle_step(model, optimizer, *batches[s], guard, s, grad_clip=1.0, **settings)[2]
        dt = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    return {"sizes": sizes, "params": n_params, "ms_per_iter": 1000 * dt / cfg.steps, "tokens_per_sec": tokens / dt,
            "lines_per_sec": batch_size * cfg.steps / dt, "bytes_per_sec": n_bytes / dt,
            "flops": 6 * n_params * tokens / dt}


def word_mle_speed(corpus, cfg, peak_flops: float) -> list[dict]:
    """mle_speed of each MLE_SIZES GPT-2 on `corpus` at word level (its full training vocabulary)
    and as a byte-level BPE of BPE_VOCAB symbols of its canonical text; each with its share of peak_flops."""
    from datasets import LMData, build_tokenizer
    from datasets.bpe import BPETokenizer
    from datasets.corpora import Corpus
    words = build_tokenizer(corpus)  # = WordTokenizer.fit(train, lowercase=True): every training word
    canon = {s: [" ".join(words.split(line)) for line in getattr(corpus, s)] for s in ("train", "val", "test")}
    bpe = BPETokenizer.fit(canon["train"], vocab_size=BPE_VOCAB)
    # the same text in both: canonical UTF-8 bytes, plus one per line for its end (as bits_per_byte counts)
    line_bytes = torch.tensor([len(line.encode("utf-8")) + 1 for line in canon["train"]])
    datas = (("word", LMData(corpus, words)),
             ("BPE", LMData(Corpus(corpus.name, "bpe", "sequence", canon["train"], canon["val"], canon["test"]), bpe)))
    rows = []
    for vocab, data in datas:
        for sizes in MLE_SIZES:
            r = mle_speed(data, sizes, MLE_BATCH, line_bytes, cfg)
            rows.append({"vocab": vocab, "vocab_size": data.tokenizer.vocab_size, **r,
                         "share_of_peak": r["flops"] / peak_flops})
    return rows


def data_dir_of(cfg) -> Path:
    """Where the benchmarks look for corpus files: data_dir, else $TEXTDUEL_DATA_DIR, else the
    download cache (a corpus found in neither is left out of the figures, and the output says so)."""
    return Path(find_data_dir(cfg.data_dir) or cache_dir())


def corpus_files_present(keys, data_dir: Path) -> bool:
    """Whether every datasets.corpora.FILES entry in keys is in the data directory or the cache
    (where load_corpus looks before it would download)."""
    from datasets.corpora import FILES
    return all((data_dir / FILES[k].filename).is_file() or (cache_dir() / FILES[k].filename).is_file() for k in keys)


def padding_shares(cfg, messages) -> dict:
    """Per corpus: training lines, mean and longest tokens of a training example (<eos> included)
    and the padding share of one epoch of batches as one block and in sorted micro-batches (PADDING_BATCHES)."""
    from datasets import LMData, build_tokenizer, load_corpus
    data_dir = data_dir_of(cfg)
    corpora, skipped = [], []
    for name, keys in PADDING_CORPORA.items():
        if corpus_files_present(keys, data_dir):
            corpora.append(load_corpus(name, data_dir=str(data_dir)))
        else:
            skipped.append(name)
    rows = []
    for corpus in corpora + [messages]:
        data = LMData(corpus, build_tokenizer(corpus))
        lengths = data.splits["train"].lengths
        rows.append({"corpus": corpus.name, "lines": len(lengths), "mean_tokens": float(lengths.float().mean()),
                     "longest": int(lengths.max()),
                     **{b: {bs: data.padding_share(bs, PADDING_SEED, batching=b) for bs in PADDING_BATCHES}
                        for b in ("random", "length")}})
    return {"data_dir": str(data_dir), "rows": rows, "skipped": skipped}


def fit_estimates(per_step: float, val_pass: float, scorer_cfg, budgets) -> dict:
    """{steps: (LM-score fit seconds, one reverse-LM fit seconds)} at each step budget, as Judge.plan
    estimates them (judge.fit_seconds)."""
    from experiments.scoring.judge import fit_seconds
    return {steps: (fit_seconds(steps, per_step, val_pass, scorer_cfg.val_interval),
                    fit_seconds(scorer_cfg.reverse_steps or steps, per_step, val_pass, scorer_cfg.val_interval))
            for steps in budgets}

def judge_cost(cfg, device, messages) -> dict:
    """The judge's scorer GPT-2 (ScorerConfig defaults) measured by judge.probe_fit on each corpus,
    and on messages also at the corpus's word vocabulary (what the judge read before the BPE)."""
    from datasets import build_tokenizer, load_corpus
    from experiments.scoring.judge import probe_fit
    from experiments.scoring.lm_score import ScorerConfig, ScorerText, needed_block_size, scorer_block_size
    from experiments.scoring.samples import SampleTokenizer
    scorer_cfg = ScorerConfig()
    budgets = (scorer_cfg.steps, 100)
    data_dir = data_dir_of(cfg)
    corpora = [messages, load_corpus("numbers")]
    coco_found = corpus_files_present(PADDING_CORPORA["coco"], data_dir)
    if coco_found and not cfg.quick:
        corpora.append(load_corpus("coco", data_dir=str(data_dir)))
    rows = []
    for corpus in corpora:
        text = ScorerText(corpus, SampleTokenizer(build_tokenizer(corpus)), scorer_cfg)
        canon = text.corpus(corpus)
        block = scorer_block_size(text.tokenizer, canon)
        per_step, val_pass, params = probe_fit(canon.train, canon.val, text.tokenizer, block, scorer_cfg, device)
        rows.append({"corpus": corpus.name, "vocab": "BPE", "vocab_size": text.tokenizer.vocab_size,
                     "block_size": block, "params": params, "step_s": per_step, "val_pass_s": val_pass,
                     "estimates": fit_estimates(per_step, val_pass, scorer_cfg, budgets)})
    # before: the comparison's word tokenizer, context one past the longest line (the old LMScorer);
    # its validation pass takes tens of seconds, so the quick mode validates on 32 lines and reports none
    words = build_tokenizer(messages)
    block = needed_block_size(words, messages.train, messages.val, messages.test) + 1
    val = messages.val[:32] if cfg.quick else messages.val
    per_step, val_pass, params = probe_fit(messages.train, val, words, block, scorer_cfg, device)
    val_pass = None if cfg.quick else val_pass
    rows.append({"corpus": messages.name, "vocab": "word", "vocab_size": words.vocab_size, "block_size": block,
                 "params": params, "step_s": per_step, "val_pass_s": val_pass,
                 "estimates": None if val_pass is None else fit_estimates(per_step, val_pass, scorer_cfg, budgets)})
    return {"scorer": {k: getattr(scorer_cfg, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "batch_size",
                                                           "steps", "reverse_steps", "val_interval")},
            "budgets": budgets, "threads": torch.get_num_threads(), "rows": rows,
            "coco": "measured" if coco_found and not cfg.quick else "left out in quick mode" if coco_found else
            f"not found in {data_dir} or the cache"}


# ---------------------------------------------------------------------------- report

def human(x):
    if x is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def mib(b):
    return "-" if b is None else f"{b / 2**20:.1f} MiB"


def flops(x):
    return f"{x / 1e9:.2f} G" if x >= 1e9 else f"{x / 1e6:.0f} M"


def peak_section(cfg, messages, results) -> None:
    """The measured 1-thread fp32 matmul peak, and the word-level MLE step's share of it."""
    sizes = (256, 512) if cfg.quick else (512, 1024, 2048)
    by_size = matmul_peak(sizes)
    best = max(by_size.values())
    print("\nmatmul peak (1 thread, fp32): " + ", ".join(f"{n}: {flops(f)}FLOP/s" for n, f in by_size.items())
          + f"; best {flops(best)}FLOP/s")
    rows = word_mle_speed(messages, cfg, best)
    results["peak"] = {"matmul_flops": by_size, "peak_flops": best, "mle": rows}
    print(f"MLE step of GPT-2 on messages ({len(messages.train):,} training lines), batch {MLE_BATCH}, 1 thread, "
          f"fp32, {cfg.steps} timed steps; FLOP/s = 6 x all parameters x tok/s (attention left out); "
          "lines/s and kB/s count the same text under both vocabularies (kB: UTF-8 bytes of the lowercased, "
          "space-separated words, plus one per line)")
    print(f"{'vocab':<13}{'GPT-2':>8}{'params':>11}{'ms/iter':>9}{'train tok/s':>13}{'lines/s':>9}{'kB/s':>8}"
          f"{'FLOP/s':>10}{'of peak':>9}")
    for r in rows:
        s = r["sizes"]
        print(f"{r['vocab'] + ' ' + format(r['vocab_size'], ','):<13}{str(s['n_layer']) + ' x ' + str(s['n_embd']):>8}"
              f"{r['params']:>11,}{r['ms_per_iter']:>9.1f}{human(r['tokens_per_sec']):>13}{r['lines_per_sec']:>9.0f}"
              f"{r['bytes_per_sec'] / 1e3:>8.1f}{flops(r['flops']):>10}{100 * r['share_of_peak']:>8.1f}%")


def padding_section(cfg, messages, results) -> None:
    p = padding_shares(cfg, messages)
    results["padding"] = p
    print(f"\npadding share (computed / real tokens) of one epoch of training batches, seed {PADDING_SEED}; "
          "tokens per training line include <eos>")
    for name in p["skipped"]:
        print(f"  {name}: skipped, its files are not in {p['data_dir']} or the cache")
    bs = PADDING_BATCHES
    print(f"{'corpus':<10}{'lines':>8}{'mean tok':>10}{'longest':>9}"
          + "".join(f"{'random ' + str(b):>11}" for b in bs) + "".join(f"{'length ' + str(b):>11}" for b in bs))
    for r in p["rows"]:
        print(f"{r['corpus']:<10}{r['lines']:>8,}{r['mean_tokens']:>10.1f}{r['longest']:>9}"
              + "".join(f"{r['random'][b]:>11.2f}" for b in bs) + "".join(f"{r['length'][b]:>11.2f}" for b in bs))


def judge_section(cfg, device, messages, results) -> None:
    j = judge_cost(cfg, device, messages)
    results["judge"] = j
    s, budgets = j["scorer"], j["budgets"]
    print(f"\nthe judge's scorer GPT-2 ({s['n_layer']} x {s['n_embd']}, {s['n_head']} heads, batch {s['batch_size']}, "
          f"validation every {s['val_interval']} steps) by judge.probe_fit, {device}, {j['threads']} thread(s); "
          "est. s: the LM-score fit (once per comparison) and one reverse-LM fit (one per row), at each step budget; "
          f"COCO {j['coco']}")
    print(f"{'corpus':<10}{'vocab':>12}{'block':>7}{'params':>11}{'ms/step':>9}{'val s':>7}"
          + "".join(f"{'fit ' + str(b):>9}{'rev ' + str(b):>9}" for b in budgets))
    for r in j["rows"]:
        est = r["estimates"]
        print(f"{r['corpus']:<10}{r['vocab'] + ' ' + format(r['vocab_size'], ','):>12}{r['block_size']:>7}"
              f"{r['params']:>11,}{1000 * r['step_s']:>9.1f}"
              + (f"{r['val_pass_s']:>7.2f}" if r["val_pass_s"] is not None else f"{'-':>7}")
              + "".join(f"{est[b][0]:>9.1f}{est[b][1]:>9.1f}" if est else f"{'-':>9}{'-':>9}" for b in budgets))
    print("  (the word row: the corpus's own word vocabulary, what the judge read before its BPE"
          + ("; quick mode: no validation pass timed)" if cfg.quick else ")"))


BPE_VOCABS = (2048, 4096)
BPE_PROBE = """
import json, sys, time
from datasets import load_corpus
from datasets.bpe import BPETokenizer
name, data_dir, vocabs = sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3].split(",")]
corpus = load_corpus(name, data_dir=data_dir or None)
lines = corpus.train
out = {"corpus": name, "lines": len(lines), "rows": []}
for v in vocabs:
    t0 = time.perf_counter()
    tok = BPETokenizer.fit(lines, vocab_size=v, lowercase=corpus.lowercase)
    t1 = time.perf_counter()
    ids = tok.encode_batch(lines)
    t2 = time.perf_counter()
    out["rows"].append({"vocab": tok.vocab_size, "fit_s": t1 - t0, "encode_s": t2 - t1,
                        "tokens": sum(map(len, ids))})
print(json.dumps(out))
"""


def bpe_cost(cfg) -> dict:
    """BPETokenizer.fit + encode_batch of a corpus's training lines in a fresh process with
    RAYON_NUM_THREADS=1 (Hugging Face's thread pool is sized once per process): COCO where its
    files are found, else numbers."""
    import json
    import os
    import subprocess
    data_dir = data_dir_of(cfg)
    name = "coco" if corpus_files_present(PADDING_CORPORA["coco"], data_dir) and not cfg.quick else "numbers"
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", BPE_PROBE, name, str(data_dir), ",".join(map(str, BPE_VOCABS))],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bpe_section(cfg, results) -> None:
    b = bpe_cost(cfg)
    results["bpe"] = b
    print(f"\nbyte-level BPE (datasets/bpe.py) of {b['corpus']}'s {b['lines']:,} training lines, one Rayon thread "
          "(a fresh process): learning the merges, then encoding every line")
    print(f"{'vocab':>7}{'fit s':>8}{'encode s':>10}{'total s':>9}{'tokens':>10}")
    for r in b["rows"]:
        print(f"{r['vocab']:>7,}{r['fit_s']:>8.2f}{r['encode_s']:>10.2f}{r['fit_s'] + r['encode_s']:>9.2f}"
              f"{r['tokens']:>10,}")


def resolve_setup(cfg) -> tuple[dict, list[str]]:
    """The settings actually used, and notes on requests that this device cannot honour."""
    device = runtime.resolve_device(cfg.device)
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dtype = runtime.resolve_dtype(cfg.dtype, device)
    notes += [str(w.message) for w in caught]
    cuda = device.type == "cuda"
    compile_ = cuda if cfg.compile is None else cfg.compile
    if compile_ and not cuda:
        notes.append(f"compile=true ignored on {device.type}: torch.compile is used on CUDA only; running eager")
        compile_ = False
    fused = cuda if cfg.fused is None else cfg.fused
    if fused and not cuda:
        notes.append(f"fused=true ignored on {device.type}: the fused AdamW kernel is used on CUDA only")
        fused = False
    return {"device": device, "dtype": dtype, "compile": compile_, "fused": fused}, notes


def main(argv=None):
    gc.freeze()  # everything alive now is never garbage: keeps each gc.collect() in PeakMemory fast
    try:
        return run(argv)
    finally:
        gc.unfreeze()


def models_table(cfg, setup, results) -> None:
    """Every registered model at its default sizes, on names-like data: training and sampling speed."""
    device = setup["device"]
    print(f"\nmodels at their default sizes on names-like data (vocab {cfg.vocab_size}, block {cfg.block_size}, "
          f"batch {cfg.batch_size}); {cfg.steps} timed steps each; sampling {cfg.sample_batch} rows x "
          f"{cfg.block_size - 1} tokens")
    cuda = device.type == "cuda"
    print(f"{'model':<14}{'params':>9}{'train tok/s':>13}{'ms/iter':>9}{'sample tok/s':>14}{'no cache':>10}"
          f"{'peak mem':>12}" + (f"{'MFU':>8}" if cuda else ""))
    batches = names_like_batches(4, cfg.batch_size, cfg.block_size, cfg.vocab_size, cfg.seed)
    # one untimed run first, so that one-off costs (thread pools, allocator arenas, kernel
    # selection) are not charged to whichever model happens to come first
    train_speed(build("bigram-neural", cfg.vocab_size, cfg.block_size, cfg.seed, device), batches, cfg, setup)
    for name in cfg.model_names():
        model = build(name, cfg.vocab_size, cfg.block_size, cfg.seed, device)
        closed_form = bool(getattr(model, "closed_form", False))  # its counts are buffers, not parameters
        n_params = sum(t.numel() for t in (model.buffers() if closed_form else model.parameters()))
        tok_s, ms, mem = train_speed(model, batches, cfg, setup)
        rows, new = cfg.sample_batch, cfg.block_size - 1
        reps = 1 if cfg.quick else 5
        cached = sample_speed(model, rows, new, setup, True, reps) if hasattr(model, "init_cache") else None
        plain = sample_speed(model, rows, new, setup, False, reps)
        r = {"params": n_params, "train_tokens_per_sec": tok_s, "ms_per_iter": ms, "sample_tokens_per_sec_cache": cached,
             "sample_tokens_per_sec_no_cache": plain, "peak_bytes": mem, "mfu": mfu(n_params, tok_s, setup),
             "closed_form": closed_form}
        results["models"][name] = r
        label = name + (" (fit)" if closed_form else "")
        util = "-" if r["mfu"] is None else f"{100 * r['mfu']:.2f}%"
        print(f"{label:<14}{n_params:>9,}{human(tok_s):>13}{ms:>9.2f}{human(cached):>14}{human(plain):>10}"
              f"{mib(mem):>12}" + (f"{util:>8}" if cuda else ""))
        del model


def cuda_effects(cfg, setup, results) -> None:
    """What bf16 autocast, torch.compile and fused AdamW each buy, on nanoGPT's GPU config."""
    print("\nGPT-2 at nanoGPT's shakespeare-char GPU config (6 layers, 6 heads, 384 wide, block 256, batch 64):")
    print(f"{'variant':<26}{'ms/iter':>9}{'tok/s':>10}{'MFU':>8}{'peak mem':>12}")
    big = dict(n_layer=6, n_head=6, n_embd=384)
    bf16 = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    variants = [("all on", bf16, True, True), ("bf16 autocast off", torch.float32, True, True),
                ("torch.compile off", bf16, False, True), ("fused AdamW off", bf16, True, False),
                ("all off", torch.float32, False, False)]
    if cfg.quick:
        variants = [v for v in variants if not v[2]]  # no compile in a smoke test
    results["cuda_effects"] = {}
    for label, dt, comp, fus in variants:
        s = {"device": setup["device"], "dtype": dt, "compile": comp, "fused": fus}
        if comp:
            torch._dynamo.reset()  # compile each variant afresh
        r = gpt2_throughput(big, 65, 256, 64, cfg, s)
        results["cuda_effects"][label] = r
        m = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"{label:<26}{r['ms_per_iter']:>9.1f}{human(r['tokens_per_sec']):>10}{m:>8}{mib(r['peak_bytes']):>12}")


def parse_args(argv) -> BenchConfig:
    cfg = cfglib.parse({"bench": BenchConfig()}, argv)["bench"]
    if cfg.quick:
        cfg = cfglib.resolve({"bench": cfg}, {}, [("steps", "3"), ("warmup", "1"), ("sample_batch", "4")])["bench"]
    return cfg


def run(argv):
    cfg = parse_args(argv)
    setup, notes = resolve_setup(cfg)
    device = setup["device"]
    torch.manual_seed(cfg.seed)
    results = {"setup": {k: str(v) for k, v in setup.items()}, "notes": notes, "models": {}}
    dname = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"TextDuel benchmark | torch {torch.__version__} | device {device} ({dname}), {torch.get_num_threads()} "
          f"threads | dtype {str(setup['dtype']).replace('torch.', '')} | compile {'on' if setup['compile'] else 'off'}"
          f" | fused AdamW {'on' if setup['fused'] else 'off'}{' | quick' if cfg.quick else ''}")
    for note in notes:
        print(f"note: {note}")
    models_table(cfg, setup, results)
    # GPT-2 at nanoGPT's CPU config
    nano = dict(n_layer=4, n_head=4, n_embd=128)
    r = gpt2_throughput(nano, 65, 64, 12, cfg, setup)
    results["nanogpt_cpu"] = r
    print(f"\nGPT-2 at nanoGPT's CPU config (4 layers, 4 heads, 128 wide, block 64, batch 12, vocab 65, "
          f"{r['params'] / 1e6:.2f}M params): {r['ms_per_iter']:.1f} ms/iter, {human(r['tokens_per_sec'])} tokens/s, "
          f"peak mem {mib(r['peak_bytes'])}" + (f", MFU {100 * r['mfu']:.2f}%" if r["mfu"] is not None else ""))
    if device.type == "cuda" and cfg.effects:
        cuda_effects(cfg, setup, results)
    if cfg.guided:
        results["guided"] = guided_speed(cfg, device)
        print("\nGuided sampling (GPT-2 2 x 64 on numbers, a 1-layer discriminator trained on its samples):")
        for r in results["guided"]:
            print(f"  {r['sampler']:<18} {r['samples_per_sec']:8.1f} samples/s, {r['candidates']:.2f} candidates "
                  "per sample")
    if cfg.ratio:
        ratio_section(cfg, results)
    if cfg.bleu:
        b = bleu_speed(cfg)
        results["bleu"] = b
        print(f"\nBLEU-2..5 of {b['hyps']} hypotheses against {b['refs']} references, {b['source']}:")
        print(f"  experiments.scoring.metrics: {b['build_s'] + b['score_s']:.2f} s ({b['build_s']:.2f} s reference "
              f"table, {b['score_s']:.2f} s scoring), {b['hyps'] / b['score_s']:,.0f} hyps/s")
        print(f"  nltk sentence_bleu:  {b['nltk_s_measured']:.2f} s for {b['n_nltk']} hyps, "
              f"{b['nltk_s_extrapolated']:.1f} s extrapolated; speedup {b['speedup']:,.0f}x, "
              f"max |ours - nltk| {b['max_abs_diff']:.1e}")
    messages = messages_corpus() if cfg.peak or cfg.padding or cfg.judge else None
    if cfg.peak:
        peak_section(cfg, messages, results)
    if cfg.padding:
        padding_section(cfg, messages, results)
    if cfg.judge:
        judge_section(cfg, device, messages, results)
    if cfg.bpe:
        bpe_section(cfg, results)
    return results

if __name__ == "__main__":
    cli.run(main)
