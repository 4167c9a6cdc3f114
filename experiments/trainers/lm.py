"""The language-model trainer behind `python -m experiments.train_lm` (and experiments.compare).

Settings: TrainConfig below and the model's config (see baselines/), resolved as
defaults <- preset <- --config FILE <- --key=value. The run directory
(out_dir/run_name) receives TensorBoard events, config.json, last.pt, best.pt (lowest
validation NLL), samples.txt and metrics.json. At the end, the best checkpoint's test
NLL is reported per token with padding excluded.

The loop is plain on purpose: AdamW (weight decay on 2-D weights only), linear warmup
and cosine decay, gradient clipping, a complete deterministic validation pass every
eval_interval steps, resume from last.pt with --resume true.

Resume is exact (tests/test_resume.py kills a run with SIGKILL): batches are a function of
(seed, step), and last.pt holds the optimizer, the step, best_val and the global RNG state
right after that step; evaluation and sampling use their own generators, never the global
RNG, and wall-clock timing only feeds logs. Keep it so. The run directory's lock, the
divergence guard (a non-finite loss or gradient norm stops the run before the update, so
no checkpoint ever holds broken weights), atomic checkpoints and the resume bookkeeping are
the run session's (experiments/core/session.py), shared with the GAN trainer.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from baselines import MODELS
from baselines.hf_gpt2 import load_hf
from datasets import DataConfig, LMData
from experiments.core import config as cfglib
from experiments.core import budget, runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe, timed
from experiments.core.checkpoint import check_compatible, load_checkpoint, unwrap
from experiments.core.session import RunSession, mle_step
from experiments.scoring.probes import Diagnostics, log_stats
from experiments.generators.generation import lm_texts
from experiments.scoring.nll import bits_per_byte, lm_nll
from experiments.scoring.samples import SampleEvaluator


@dataclass
class TrainConfig(DataConfig):
    model: str = "gpt2"            # a name in baselines.MODELS
    preset: str = ""               # a size preset of the model's config (e.g. gpt2: makemore, nanogpt-cpu)
    out_dir: str = "runs"          # parent of run directories (git-ignored)
    run_name: str = ""             # default: <dataset>-<model>
    seed: int = 1337               # model init, dropout and batch order
    device: str = "auto"           # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
    dtype: str = "auto"            # auto (bf16 autocast on CUDA, fp32 elsewhere) | float32 | bfloat16
    compile: bool = False          # torch.compile the model (CUDA only; ignored elsewhere)
    batch_size: int = 32           # sequences per optimizer step (global: summed over ranks and micro-steps)
    grad_accum: int = 1            # micro-steps per optimizer step; batch_size is split across them and ranks
    max_steps: int = 2000          # optimizer steps
    max_minutes: float = 0.0       # wall-clock budget; 0 = none (training stops at whichever comes first)
    lr: float = 1e-3               # peak learning rate
    min_lr: float = 1e-4           # learning rate at the end of the cosine decay
    warmup_steps: int = 100        # linear warmup
    weight_decay: float = 0.1      # AdamW, on 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0         # max global gradient norm; 0 = off
    eval_interval: int = 500       # steps between validation passes, checkpoints and samples
    ckpt_interval: int = 0         # steps between extra last.pt checkpoints (cheap preemption insurance); 0 = at evaluations only
    eval_batch_size: int = 256
    log_interval: int = 10         # steps between train scalars
    diagnostics_interval: int = 0  # steps between training diagnostics (activations, gradients, update:data; experiments/diagnostics.py); 0 = off
    num_samples: int = 20          # samples printed and logged at each evaluation and at the end
    eval_samples: int = 200        # samples scored at each evaluation (BLEU, self-BLEU, ...: experiments/scoring/samples.py); 0 = off
    temperature: float = 1.0
    top_k: int = 0                 # 0 = no top-k filtering
    resume: bool = False           # continue from run_dir/last.pt
    progress: bool = True          # tqdm progress bar
    hf_init: str = ""              # a Hugging Face GPT-2 folder to fine-tune (config.json, model.safetensors or
                                   # pytorch_model.bin, its tokenizer files): the gpt2 model takes its sizes and
                                   # weights, the data its BPE (level bpe, tokenizer = this folder); baselines/hf_gpt2.py

    def __post_init__(self):
        if self.hf_init:  # the checkpoint's BPE reads the text: level and tokenizer follow from it
            if self.model != "gpt2":
                raise ValueError(f"hf_init loads a GPT-2: give --model gpt2 with it (got {self.model!r})")
            self.read_with_tokenizer_of(self.hf_init, "hf_init")
        super().__post_init__()
        positive = ("batch_size", "grad_accum", "max_steps", "eval_interval", "eval_batch_size", "log_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}; "
                                 f"set --{name} to a number > 0")
        non_negative = ("ckpt_interval", "diagnostics_interval", "warmup_steps", "max_minutes", "weight_decay", "grad_clip", "top_k")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}; "
                                 f"set --{name} to 0 (off) or a positive number")
        if not (math.isfinite(self.lr) and 0 < self.lr and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}; "
                             "set --lr and --min_lr accordingly")
        if self.eval_samples < 0 or self.eval_samples == 1:
            raise ValueError(f"eval_samples must be 0 (off) or >= 2, got {self.eval_samples}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}; use top_k=1 for greedy decoding")
        if self.model not in MODELS:
            import difflib
            close = difflib.get_close_matches(self.model, list(MODELS), n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ValueError(f"unknown model {self.model!r}: {hint}choose one of {sorted(MODELS)}")


def reserve_final_scoring(deadline, data, cfg, evaluator, val_nll, draw_samples):
    """Measure what the run does after training stops (the last evaluation, then the test and val
    passes and the final samples of the best checkpoint) and keep that much of max_minutes."""
    n = min(max(cfg.num_samples, cfg.eval_samples), PROBE_SAMPLES)
    score = (lambda: evaluator(draw_samples(n, seed=0))) if evaluator else (lambda: draw_samples(n, seed=0))
    cost = probe(val=val_nll, samples=score)
    test_share = data.n_tokens("test") / max(data.n_tokens("val"), 1)
    per_sample = cost["samples"] / n
    deadline.reserve(cost["val"] * (2 + test_share) + per_sample * (2 * cfg.num_samples + cfg.eval_samples),
                     f"the last evaluation and the final scoring ({cfg.num_samples + cfg.eval_samples} samples, "
                     "NLL on val and test)", evaluation=cost["val"] + per_sample * (cfg.num_samples + cfg.eval_samples))


def reserve(deadline, run) -> None:
    reserve_final_scoring(deadline, run.data, run.cfg, run.evaluator, run.val_nll, run.draw)


def check_budget(argv) -> None:
    """A max_minutes the final scoring alone would eat, refused without training (budget.check_budget)."""
    cfg, model_cfg = parse_args(argv)
    budget.check_budget(cfg, lambda c: LMRun(c, model_cfg, runtime.Distributed(c.device)), reserve)


def parse_args(argv) -> tuple[TrainConfig, object]:
    """defaults <- preset <- config file <- command line, for both sections."""
    file_values, pairs = cfglib.read_cli(argv)
    model_name = cfglib.peek(file_values, pairs, "train", "model", TrainConfig.model)
    if model_name not in MODELS:
        TrainConfig(model=model_name)  # raises with the closest names
    model_config_cls = MODELS[model_name][1]
    preset = cfglib.peek(file_values, pairs, "train", "preset", "")
    model_defaults = model_config_cls()
    if preset:
        presets = getattr(model_config_cls, "presets", {})
        if preset not in presets:
            raise cfglib.ConfigError(f"{model_name} has no preset {preset!r}; choose one of {sorted(presets) or 'none'}")
        model_defaults = dataclasses.replace(model_defaults, **presets[preset])
    sections = cfglib.resolve({"train": TrainConfig(), "model": model_defaults}, file_values, pairs)
    cfglib.refuse_data_derived(sections)
    return sections["train"], sections["model"]


def run_dir_of(cfg) -> Path:
    """out_dir/run_name; the default run name is <dataset>-<model>."""
    return Path(cfg.out_dir) / (cfg.run_name or f"{Path(cfg.dataset).stem}-{cfg.model}")


class LMRun:
    """The state of one training run that its parts share: settings, data, model, optimizer,
    the run session (lock, guard, checkpoints, logger, timing), step and best validation NLL."""

    def __init__(self, cfg: TrainConfig, model_cfg, dist):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        if cfg.batch_size % (dist.world * cfg.grad_accum):
            raise cfglib.ConfigError(f"batch_size {cfg.batch_size} must be divisible by world size x grad_accum "
                                     f"= {dist.world} x {cfg.grad_accum}, so that every micro-batch has the same rows")
        self.dtype = runtime.resolve_dtype(cfg.dtype, self.device)
        runtime.seed_everything(cfg.seed)
        fp32 = "" if self.dtype == torch.float32 else f", or train in float32 (now {str(self.dtype).replace('torch.', '')})"
        self.session = RunSession(cfg, run_dir_of(cfg), dist, advice=f"Lower lr (now {cfg.lr}) or keep grad_clip > 0 "
                                                                     f"(now {cfg.grad_clip}){fp32}")
        self.best_path = self.session.run_dir / "best.pt"
        # data: the vocabulary comes from the training split (on resume it must equal the checkpoint's)
        self.corpus = cfg.load()
        self.tokenizer = self.session.tokenizer(self.corpus)
        self.data = LMData(self.corpus, self.tokenizer, block_size=model_cfg.block_size, batching=cfg.batching)
        # reference tables built once; sequence corpora only (BLEU needs one example per line)
        self.evaluator = (SampleEvaluator(self.corpus, self.tokenizer)
                          if cfg.eval_samples and self.data.mode == "sequence" and dist.is_main else None)
        # model: sizes the data decides are filled in here, once (or all of them from a Hugging Face GPT-2)
        if cfg.hf_init:
            model, _ = load_hf(cfg.hf_init, block_size=self.data.block_size, dropout=model_cfg.dropout)
            self.model_cfg, self.model = model.config, model.to(self.device)
            self.session.say(f"fine-tuning the Hugging Face GPT-2 of {cfg.hf_init} ({self.model_cfg.n_layer} layers x "
                             f"{self.model_cfg.n_embd}; its sizes replace --n_layer, --n_head, --n_embd)")
        else:
            self.model_cfg = dataclasses.replace(model_cfg, vocab_size=self.tokenizer.vocab_size,
                                                 block_size=self.data.block_size)
            self.model = MODELS[cfg.model][0](self.model_cfg).to(self.device)
        if getattr(self.model, "batch_statistics", False):  # BatchNorm: lines of one length would skew its statistics
            self.data.whole_batches(f"{cfg.model} normalises by batch statistics")
        self.closed_form = getattr(self.model, "closed_form", False)  # e.g. the count bigram: fitted, not trained
        self.optimizer = None if self.closed_form else runtime.make_optimizer(
            self.model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), self.device)
        self.step, self.best_val = 0, math.inf
        if self.session.ckpt:
            self.restore(self.session.ckpt)

    def restore(self, ckpt: dict) -> None:
        check_compatible(ckpt, self.cfg.model, asdict(self.model_cfg), self.tokenizer.itos,
                         data=self.cfg.data_settings())
        self.model.load_state_dict(ckpt["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.best_val = ckpt["step"], ckpt["best_val"]
        runtime.set_rng_state(ckpt["rng"])
        self.session.resumed(f"at step {self.step} (best val nll {self.best_val:.4f})")

    def amp(self):
        return runtime.autocast(self.device, self.dtype)

    def val_nll(self, split: str = "val") -> dict:
        return lm_nll(self.model, self.data.eval_batches(split, self.cfg.eval_batch_size), self.device, self.amp)

    def draw(self, n: int, seed: int) -> list[str]:
        return lm_texts(self.model, self.tokenizer, n, self.data.block_size, self.cfg.temperature, self.cfg.top_k,
                        seed=seed, fixed_length=self.data.fixed_length)

    def checkpoint(self, path: Path) -> None:
        self.session.save(path, {
            "model_name": self.cfg.model, "model_config": asdict(self.model_cfg),
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "tokenizer": self.tokenizer.state_dict(), "best_val": self.best_val,
            "fixed_length": self.data.fixed_length,  # how samplers must draw (exactly n tokens, or up to <eos>)
        }, {"model": unwrap(self.model)}, self.step)

    def evaluate_and_checkpoint(self) -> dict:
        """Validation NLL, text samples and the sample metrics (a fixed seed, so the curve tracks
        the model); best.pt when val improves, then last.pt."""
        cfg, log = self.cfg, self.session.log
        val = self.val_nll()
        log.scalar("val/nll", val["nll"], self.step)
        log.scalar("val/bits", val["bits"], self.step)
        log.samples("samples", self.draw(cfg.num_samples, seed=cfg.seed + self.step), self.step)
        if self.evaluator is not None:
            self.evaluator(self.draw(cfg.eval_samples, seed=cfg.seed + 1), self.step, log)
        if val["nll"] < self.best_val:
            self.best_val = val["nll"]
            self.checkpoint(self.best_path)
        self.checkpoint(self.session.last_path)
        return val


def train_step(run: LMRun, train_model, diag) -> tuple[float, float, float, int]:
    """One optimizer step at run.step; returns (train loss, lr, gradient norm, target tokens)."""
    cfg = run.cfg
    t_step = time.perf_counter()
    lr = runtime.lr_at(run.step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    # the global batch is the same on every rank; mle_step gives each rank its rows, in micro-batches
    x, y = run.data.train_batch(run.step, cfg.batch_size, cfg.seed)
    diagnose = diag is not None and (run.step + 1) % cfg.diagnostics_interval == 0
    if diagnose:
        diag.start()  # forward hooks for this step only; removed before the update, which they read
    loss, grad_norm, tokens = mle_step(run.model, run.optimizer, x, y, run.session.guard, run.step,
                                       grad_clip=cfg.grad_clip, train_model=train_model, dist=run.dist,
                                       grad_accum=cfg.grad_accum, amp=run.amp, **run.data.step_settings(cfg.batch_size),
                                       before_step=diag.before_step if diagnose else None)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)  # kernels are asynchronous: time the finished step
    if not diagnose:  # a diagnostics step carries hooks and weight copies: left out of the step time
        run.session.time_step(time.perf_counter() - t_step)
    run.step += 1
    if diagnose:
        log_stats(run.session.log, diag.after_step(), run.step)
    return loss, lr, grad_norm, tokens


def train(run: LMRun, deadline: Deadline) -> None:
    """Steps until max_steps or the wall-clock budget; evaluation and checkpoints at eval_interval,
    extra last.pt at ckpt_interval."""
    cfg, session, log = run.cfg, run.session, run.session.log
    train_model = run.dist.wrap(runtime.maybe_compile(run.model, cfg.compile, run.device))
    diag = Diagnostics(run.model) if cfg.diagnostics_interval and run.dist.is_main else None
    session.start_clock()
    t_last, tokens_since = time.time(), 0
    bar = tqdm(total=cfg.max_steps, initial=run.step, disable=not (cfg.progress and run.dist.is_main),
               dynamic_ncols=True, desc=cfg.model)
    while run.step < cfg.max_steps:
        loss, lr, grad_norm, tokens = train_step(run, train_model, diag)
        tokens_since += tokens
        bar.update(1)
        if run.step % cfg.log_interval == 0:
            now = time.time()
            log.scalars({"train/loss": loss, "lr": lr, "grad_norm": grad_norm,
                         "tokens_per_sec": tokens_since / max(now - t_last, 1e-9)}, run.step)
            bar.set_postfix(loss=f"{loss:.4f}", best_val=f"{run.best_val:.4f}")
            t_last, tokens_since = now, 0
        out_of_time = deadline.expired()
        due = session.due(run.step, cfg.max_steps, out_of_time)
        if due == "eval":
            val, seconds = timed(run.evaluate_and_checkpoint)
            deadline.observe(seconds)
            session.say(f"step {run.step}: train loss {loss:.4f}, val nll {val['nll']:.4f}")
        elif due == "save":
            run.checkpoint(session.last_path)
        if out_of_time:
            session.say(f"wall-clock budget of {cfg.max_minutes} min reached at step {run.step}")
            break
    bar.close()


def final_scoring(run: LMRun, train_seconds: float) -> tuple[dict, list[str], dict]:
    """The best-on-validation checkpoint, scored once on test (and val); (metrics, samples, test NLL)."""
    cfg = run.cfg
    if run.best_path.exists():
        run.model.load_state_dict(load_checkpoint(run.best_path)["model"])
    test, val = run.val_nll("test"), run.val_nll("val")
    samples = run.draw(cfg.num_samples, seed=cfg.seed)
    texts = run.data.byte_texts("test")
    if texts is not None:  # one scale across vocabularies (char, word, bpe): bits per byte of the test text
        test["bpb"] = bits_per_byte(test["nll"] * test["tokens"], texts)
    metrics = {"test/nll": test["nll"], "test/bits": test["bits"], "test/ppl": test["ppl"], "val/nll_best": val["nll"],
               **({"test/bpb": test["bpb"]} if "bpb" in test else {}),
               "params": sum(p.numel() for p in run.model.parameters()), "steps": run.step,
               "train_seconds": train_seconds,
               "data/oov_val": run.data.oov["val"], "data/oov_test": run.data.oov["test"],
               "ms_per_step": run.session.ms_per_step()}
    return metrics, samples, test


def describe(run: LMRun) -> str:
    data, tok = run.data, run.tokenizer
    n_train = len(data.splits["train"].x) if data.mode == "sequence" else len(data.splits["train"].tokens)
    return (f"{run.cfg.model}: {sum(p.numel() for p in run.model.parameters()):,} parameters | {run.corpus.name}: "
            f"vocab {tok.vocab_size}, block_size {data.block_size}, {n_train:,} train "
            f"{'sequences' if data.mode == 'sequence' else 'tokens'}, {data.oov_summary()} | device {run.device} "
            f"{str(run.dtype).replace('torch.', '')}")


def main(argv=None):
    cfg, model_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)  # single process unless launched by torchrun
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    run = LMRun(cfg, model_cfg, dist)
    session = run.session
    session.say(describe(run))
    session.say_batches(run.data, cfg.batch_size, cfg.seed)
    session.open_log(run.step, {"train": cfg, "model": run.model_cfg})
    if cfg.max_minutes:
        reserve(deadline, run)
    if run.closed_form and run.step == 0:  # counted in one complete pass over the training split, no descent
        run.model.fit((x.to(run.device), y.to(run.device)) for x, y in run.data.eval_batches("train", cfg.eval_batch_size))
        run.evaluate_and_checkpoint()
    if not run.closed_form:
        train(run, deadline)
    metrics, samples, test = final_scoring(run, session.train_seconds())
    dist.close()
    session.finish(metrics, samples, {**asdict(cfg), **{f"model.{k}": v for k, v in asdict(run.model_cfg).items()}},
                   {"hparam/test_nll": test["nll"], "hparam/val_nll": metrics["val/nll_best"]}, run.step,
                   n_show=cfg.num_samples)
    if dist.is_main:
        bpb = f", {test['bpb']:.4f} bits per byte" if "bpb" in test else ""
        print(f"test nll {test['nll']:.4f} nats/token ({test['bits']:.4f} bits, ppl {test['ppl']:.3f}{bpb}) "
              f"over {test['tokens']:,} tokens; val nll {metrics['val/nll_best']:.4f}; {run.step} steps in "
              f"{metrics['train_seconds']:.0f}s")
        print("samples:\n" + "\n".join("  " + t for t in samples))
        print(f"run directory: {session.run_dir}  (tensorboard --logdir {cfg.out_dir}); {deadline.summary()}")
    return metrics
