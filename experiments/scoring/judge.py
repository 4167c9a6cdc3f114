"""The judge: scores any list of texts the same way, with a cost that is known before it starts.

`Judge.score(texts)` gives the sample metrics against the test split
(experiments/scoring/samples.py), the LM score under the scorer GPT-2 trained on the real
training split, MAUVE on that GPT-2's features, and the reverse LM score
(experiments/scoring/lm_score.py: canonical text, byte-level BPE, bits per byte). Every row
of a comparison, the real-data row included, goes through it, and each call's seconds are
kept by part (`Judge.timing`) for the report's time table.

Cost, bounded and said up front: `Judge.plan()` prints what the judge will train (each
scorer LM's size, vocabulary, steps, context) and an estimate of its seconds, measured on a
few steps of the very model before anything trains. The scorer LMs read BPE of
`ScorerConfig.vocab_size` symbols, so a corpus of 17,000 word types costs what one of 40
does.

Cache. The LM-score GPT-2 and the real-data row's reverse LM score are stored under
`<out_dir>/judge-cache/<key>/`, keyed by everything that decides them (`cache_key`: the
three splits' content hash after loading, the data settings that shape the text, the scorer
settings, num_samples and sample_seed (they pick the real-data row's lines), device, dtype,
thread count, library versions and `CODE_VERSION`), written atomically under a lock that a
second process waits on, then reads; every later comparison, literature or frontier command
on that corpus reuses them and says "reused cached scorer".
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import random
import time
from pathlib import Path

import tokenizers
import torch

from datasets.batching import LMData
from experiments.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_text
from experiments.core.session import Guard, mle_step
from experiments.scoring.lm_score import (LMScorer, ScorerConfig, ScorerText, lm_score, reverse_lm_score,
                                          scorer_block_size, scorer_model)
from experiments.scoring.mauve import mauve, text_features
from experiments.scoring.nll import lm_nll
from experiments.scoring.samples import SampleEvaluator

# bump when the scorer's training or scoring changes what a cached entry holds
CODE_VERSION = 2
PROBE_STEPS = 3  # timed optimizer steps behind each estimate in the plan


def content_sha256(corpus) -> str:
    """The hash of a loaded corpus's three splits, line by line."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        h.update(split.encode())
        for line in getattr(corpus, split):
            h.update(line.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def cache_key(cfg, scorer_cfg: ScorerConfig, corpus, device) -> dict:
    """Everything the cached scorer and real-data reverse LM depend on (see the module docstring)."""
    return {"corpus": corpus.name, "content_sha256": content_sha256(corpus),
            "data": {k: getattr(cfg, k) for k in ("level", "lowercase", "min_freq", "max_vocab", "max_len")},
            "scorer": dataclasses.asdict(scorer_cfg), "num_samples": cfg.num_samples, "sample_seed": cfg.sample_seed,
            "device": str(device), "dtype": "float32", "threads": torch.get_num_threads(),
            "torch": str(torch.__version__), "tokenizers": str(tokenizers.__version__), "code_version": CODE_VERSION}


@contextlib.contextmanager
def locked(folder: Path):
    """An exclusive lock on folder/.lock for the block; a second process waits for it (unlike a run's
    RunLock, which refuses: here the waiter can use what the holder computes)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def real_sample(cfg, corpus) -> list[str]:
    """The real-data row: as many training texts as samples, drawn with sample_seed."""
    return random.Random(cfg.sample_seed).sample(corpus.train, min(cfg.num_samples, len(corpus.train)))


class Judge:
    """Scores any list of texts the same way (the module docstring). cfg: a CompareConfig (num_samples,
    sample_seed, lm_score, mauve, reverse_lm_score, out_dir)."""

    def __init__(self, cfg, scorer_cfg: ScorerConfig, corpus, tokenizer, device, cache: bool = True):
        self.cfg, self.scorer_cfg, self.corpus, self.tokenizer, self.device = cfg, scorer_cfg, corpus, tokenizer, device
        self.evaluator = SampleEvaluator(corpus, tokenizer, references="test")  # the final scoring: test, read once
        self.cache_dir = None
        if cache:
            key = cache_key(cfg, scorer_cfg, corpus, device)
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
            self.cache_dir, self.key = Path(cfg.out_dir) / "judge-cache" / digest, key
        # fitted or read at the first score(): a command whose points are all stored (frontier --reuse) needs none
        self._text, self._scorer, self._human = None, None, None
        self.fit = {"scorer_seconds": 0.0, "scorer_reused": None, "bpe_seconds": 0.0}
        self.timing: dict = {}  # the last score() call's seconds by part

    @property
    def uses_lm(self) -> bool:
        return self.cfg.lm_score or self.cfg.reverse_lm_score or self.cfg.mauve

    def text(self) -> ScorerText:
        if self._text is None:
            t0 = time.time()
            stored = self._stored()
            self._text = (ScorerText(self.corpus, self.tokenizer, self.scorer_cfg, stored["text"]) if stored
                          else ScorerText(self.corpus, self.tokenizer, self.scorer_cfg))
            self.fit["bpe_seconds"] = time.time() - t0
        return self._text

    def _stored(self) -> dict | None:
        """The cached scorer, or None: none yet, or one that cannot be read (a cache is disposable:
        it is refitted and written anew)."""
        path = self.cache_dir / "scorer.pt" if self.cache_dir else None
        if path is None or not path.is_file():
            return None
        try:
            return load_checkpoint(path)
        except CheckpointError as e:
            print(f"note: the cached scorer cannot be read ({e}); fitting it again")
            return None

    def scorer(self) -> LMScorer:
        if self._scorer is None:
            t0 = time.time()
            with locked(self.cache_dir) if self.cache_dir else contextlib.nullcontext():
                stored = self._stored()  # written meanwhile by another process holding the lock, perhaps
                if stored is not None and stored.get("key") == self.key:
                    print(f"reused cached scorer {self.cache_dir}")
                    self._text = self._text or ScorerText(self.corpus, self.tokenizer, self.scorer_cfg, stored["text"])
                    self._scorer = LMScorer(self.corpus, self._text, self.scorer_cfg, self.device,
                                            {"config": stored["model_config"], "model": stored["model"]})
                    self.fit["scorer_reused"] = True
                else:
                    print(f"training the LM-score GPT-2 on {self.corpus.name}'s training split "
                          f"({self.scorer_cfg.steps} steps)")
                    self._scorer = LMScorer(self.corpus, self.text(), self.scorer_cfg, self.device)
                    self.fit["scorer_reused"] = False
                    if self.cache_dir:
                        scorer = self._scorer.state_dict()
                        save_checkpoint(self.cache_dir / "scorer.pt", {
                            "model_name": "judge-scorer", "model": scorer["model"], "model_config": scorer["config"],
                            "key": self.key, "text": self._text.state_dict()})
                        write_text(self.cache_dir / "key.json", json.dumps(self.key, indent=1))
                        write_text(self.cache_dir / "fit.json", json.dumps({"scorer_seconds": time.time() - t0}))
            self.fit["scorer_seconds"] = time.time() - t0
        return self._scorer

    def stored_fit_seconds(self) -> float | None:
        """How long the cached scorer took to fit, when it was fitted (by whichever process)."""
        path = self.cache_dir / "fit.json" if self.cache_dir else None
        try:
            return json.loads(path.read_text())["scorer_seconds"]
        except (AttributeError, OSError, ValueError, KeyError):
            return None

    def real_reverse_lm_score(self, real: list[str]) -> float:
        """The real-data row's reverse LM score, from the cache when this key has one."""
        path = self.cache_dir / "real_reverse_lm.json" if self.cache_dir else None
        with locked(self.cache_dir) if self.cache_dir else contextlib.nullcontext():
            if path is not None and path.is_file():
                stored = json.loads(path.read_text())
                if stored.get("key") == self.key:
                    print(f"reused cached real-data reverse LM score {path}")
                    return stored["reverse_lm_score"]
            value = reverse_lm_score(real, self.corpus, self.text(), self.scorer_cfg, self.device)
            if path is not None:
                write_text(path, json.dumps({"key": self.key, "reverse_lm_score": value}, indent=1))
        return value

    def mauve(self, samples) -> float:
        model, text = self.scorer().model, self.text()
        if self._human is None:  # MAUVE's human side: num_samples test texts (all when fewer), drawn with sample_seed
            rng = random.Random(self.cfg.sample_seed)
            human = rng.sample(self.corpus.test, min(self.cfg.num_samples, len(self.corpus.test)))
            self._human = text_features(model, text.tokenizer, text.texts(human), self.device)
        return mauve(self._human, text_features(model, text.tokenizer, text.texts(samples), self.device))

    def score(self, samples, real: bool = False) -> dict:
        """Every metric of one set of texts; real=True for the real-data row (its reverse LM is cached)."""
        timing, t = {}, time.time()

        def lap(part):
            nonlocal t
            timing[part] = timing.get(part, 0.0) + time.time() - t
            t = time.time()

        m = self.evaluator.score(samples)
        lap("sample_metrics")
        if self.cfg.lm_score:
            scorer = self.scorer()
            t = time.time()  # the scorer's fit is timed once, in self.fit
            m["lm_score"] = lm_score(samples, scorer)
            lap("lm_score")
        if self.cfg.mauve:
            self.scorer()
            t = time.time()
            m["mauve"] = self.mauve(samples)
            lap("mauve")
        if self.cfg.reverse_lm_score:
            self.text()
            t = time.time()
            m["reverse_lm_score"] = (self.real_reverse_lm_score(samples) if real else
                                     reverse_lm_score(samples, self.corpus, self.text(), self.scorer_cfg, self.device))
            lap("reverse_lm")
        self.timing = timing
        return m

    # ---- the plan, before anything trains

    def plan(self, n_models: int) -> dict:
        """Print what the judge will train and an estimate of its seconds; -> the same as a dict."""
        if not self.uses_lm:
            print("judge: sample metrics only (lm_score, reverse_lm_score and mauve are off)")
            return {"estimate_seconds": 0.0}
        est = self.estimate(n_models)
        text = "\n".join(self.plan_lines(est, n_models))
        print(text)
        return {**{k: est[k] for k in ("estimate_seconds", "scorer_cached", "params", "block_size", "bpe_vocab",
                                       "unit")}, "text": text}

    def estimate(self, n_models: int) -> dict:
        """The scorer LMs' size and context, and their seconds measured by probe_fit (cached fits cost none)."""
        text, cfg = self.text(), self.scorer_cfg
        canon = text.corpus(self.corpus)
        block = scorer_block_size(text.tokenizer, canon)
        stored = self._stored()
        cached = stored is not None and stored.get("key") == self.key
        per_step, val_pass, params = probe_fit(canon.train, canon.val, text.tokenizer, block, cfg, self.device)
        fit_s = fit_seconds(cfg.steps, per_step, val_pass, cfg.val_interval)
        # a reverse LM's step is a batch of batch_size samples: about a scorer step (the same texts' kind)
        rev_s = fit_seconds(cfg.reverse_steps or cfg.steps, per_step, val_pass, cfg.val_interval)
        rev_cached = self.cache_dir is not None and (self.cache_dir / "real_reverse_lm.json").is_file()
        n_rev = (n_models + (0 if rev_cached else 1)) if self.cfg.reverse_lm_score else 0
        est = (0.0 if cached or not self.cfg.lm_score and not self.cfg.mauve else fit_s) + n_rev * rev_s
        return {"estimate_seconds": est, "scorer_cached": cached, "params": params, "block_size": block,
                "bpe_vocab": text.tokenizer.vocab_size, "unit": text.unit, "per_step": per_step,
                "fit_seconds": fit_s, "reverse_seconds": rev_s, "reverse_cached": rev_cached, "n_reverse": n_rev}

    def plan_lines(self, plan: dict, n_models: int) -> list[str]:
        """The plan as printed: 'judge: scorer LMs are GPT-2 2 x 64 ...' and a line per scorer LM."""
        text, cfg = self.text(), self.scorer_cfg
        vocab = (f"a byte-level BPE of {plan['bpe_vocab']:,} symbols (the training split's canonical text; "
                 f"{text.unit})" if not text.fixed else f"the corpus's fixed {plan['bpe_vocab']:,} ids ({text.unit})")
        lines = [f"judge: scorer LMs are GPT-2 {cfg.n_layer} x {cfg.n_embd} ({plan['params']:,} parameters) over "
                 f"{vocab}, context {plan['block_size']} tokens; {plan['per_step'] * 1000:.0f} ms per step of "
                 f"{cfg.batch_size} texts measured"]
        if self.cfg.lm_score or self.cfg.mauve:
            lines.append("  LM-score GPT-2: " + (f"reused cached scorer {self.cache_dir}" if plan["scorer_cached"] else
                         f"{cfg.steps} steps, est. {plan['fit_seconds']:.0f} s"))
        if self.cfg.reverse_lm_score:
            n_real = min(self.cfg.num_samples, len(self.corpus.train))  # real_sample's count
            lines.append(f"  reverse LM: {cfg.reverse_steps or cfg.steps} steps on each row's {n_real:,} texts, "
                         f"est. {plan['reverse_seconds']:.0f} s each, {plan['n_reverse']} to train (the real-data "
                         "row's " + ("cached" if plan["reverse_cached"] else "cached after this") + ")")
        lines.append(f"  estimated judge LM time: {plan['estimate_seconds']:.0f} s, plus the sample metrics of "
                     f"{n_models + 1} rows and the sweeps")
        return lines


def fit_seconds(steps: int, per_step: float, val_pass: float, val_interval: int) -> float:
    """A scorer LM fit's seconds: steps x per step + a validation pass every val_interval steps and at the end."""
    return steps * per_step + -(-steps // val_interval) * val_pass

def probe_fit(train, val, tokenizer, block: int, cfg: ScorerConfig, device) -> tuple[float, float, int]:
    """(seconds per optimizer step, seconds per validation pass, parameters) of a scorer GPT-2 of these
    settings, measured on PROBE_STEPS steps after one warm-up step (the RNG is left untouched)."""
    from datasets.corpora import Corpus
    data = LMData(Corpus("probe", tokenizer.level, "sequence", list(train), list(val), list(val)), tokenizer,
                  block_size=block)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model, optimizer = scorer_model(tokenizer, block, cfg, device)
        guard = Guard()
        times = []
        for step in range(PROBE_STEPS + 1):
            t = time.perf_counter()
            x, y = data.train_batch(step, cfg.batch_size, cfg.train_seed)
            mle_step(model, optimizer, x, y, guard, step, grad_clip=1.0, **data.step_settings(cfg.batch_size))
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        lm_nll(model, data.eval_batches("val", 256), device)
        val_pass = time.perf_counter() - t
    return sum(times[1:]) / PROBE_STEPS, val_pass, sum(p.numel() for p in model.parameters())
