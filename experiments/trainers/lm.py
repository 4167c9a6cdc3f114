"""Train any registered language model on any corpus.

    python -m experiments.train_lm --model gpt2 --dataset names --max_steps 20000
    python -m experiments.train_lm --config experiments/configs/lm/shakespeare_char_cpu.toml
    python -m experiments.train_lm --dataset my_corpus.txt --level word --n_layer 2

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
RNG, and wall-clock timing only feeds logs. Keep it so. A non-finite loss or gradient
norm stops the run before the update, so no checkpoint ever holds broken weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from baselines import MODELS
from baselines.sampling import generate
from datasets import BOS_ID, DataConfig, LMData, build_tokenizer
from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe, timed
from experiments.core.checkpoint import (check_compatible, load_checkpoint, load_resume_checkpoint, save_checkpoint, unwrap,
                                    write_text)
from experiments.diagnostics import Diagnostics, log_stats
from experiments.scoring.nll import lm_nll
from experiments.core.logger import RunLogger
from experiments.scoring.samples import SampleEvaluator
from experiments.core.runlock import RunLock


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

    def __post_init__(self):
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


def parse_args(argv) -> tuple[TrainConfig, object]:
    """defaults <- preset <- config file <- command line, for both sections."""
    config_path, pairs = cfglib.split_cli(argv)
    file_values = cfglib.load_file(config_path) if config_path else {}
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


def main(argv=None):
    cfg, model_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)  # single process unless launched by torchrun
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    device = dist.device
    if cfg.batch_size % (dist.world * cfg.grad_accum):
        raise cfglib.ConfigError(f"batch_size {cfg.batch_size} must be divisible by world size x grad_accum "
                         f"= {dist.world} x {cfg.grad_accum}, so that every micro-batch has the same rows")
    dtype = runtime.resolve_dtype(cfg.dtype, device)
    amp = lambda: runtime.autocast(device, dtype)  # noqa: E731
    runtime.seed_everything(cfg.seed)
    run_dir = run_dir_of(cfg)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    lock = RunLock(run_dir, enabled=dist.is_main).acquire()  # one writer per run directory

    # ---- data: the vocabulary comes from the training split (or from the checkpoint we resume)
    corpus = cfg.load()
    ckpt = load_resume_checkpoint(last_path) if cfg.resume else None
    tokenizer = build_tokenizer(corpus)  # deterministic; on resume it must equal the checkpoint's (checked below)
    data = LMData(corpus, tokenizer, block_size=model_cfg.block_size)

    # ---- model: sizes the data decides are filled in here, once
    model_cls = MODELS[cfg.model][0]
    model_cfg = dataclasses.replace(model_cfg, vocab_size=tokenizer.vocab_size, block_size=data.block_size)
    model = model_cls(model_cfg).to(device)
    closed_form = getattr(model, "closed_form", False)  # e.g. the count bigram: fitted, not trained
    optimizer = None if closed_form else runtime.make_optimizer(
        model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), device)
    step, best_val = 0, math.inf
    if ckpt:
        check_compatible(ckpt, cfg.model, asdict(model_cfg), tokenizer.itos,
                         data=cfg.data_settings())
        model.load_state_dict(ckpt["model"])
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        step, best_val = ckpt["step"], ckpt["best_val"]
        runtime.set_rng_state(ckpt["rng"])
        if dist.is_main:
            print(f"resumed {last_path} at step {step} (best val nll {best_val:.4f})")
            runtime.say_resume_changes(ckpt["train_config"], cfg, ckpt.get("environment"), runtime.environment(dist))
    # wall-clock accounting accumulates across resumes (it only feeds logs and metrics.json)
    prior = (ckpt or {}).get("timing", {})
    t_start = time.time()
    # time inside optimizer steps only (no evaluation, logging, checkpoints, diagnostics)
    step_seconds, steps_timed = prior.get("step_seconds", 0.0), prior.get("steps_timed", 0)
    n_params = sum(p.numel() for p in model.parameters())
    say = tqdm.write if dist.is_main else (lambda *a, **k: None)  # prints without breaking the progress bar
    say(f"{cfg.model}: {n_params:,} parameters | {corpus.name}: vocab {tokenizer.vocab_size}, "
          f"block_size {data.block_size}, {len(data.splits['train'].x) if data.mode == 'sequence' else len(data.splits['train'].tokens):,} "
          f"train {'sequences' if data.mode == 'sequence' else 'tokens'}, {data.oov_summary()} | device {device} "
          f"{str(dtype).replace('torch.', '')}")
    train_model = dist.wrap(runtime.maybe_compile(model, cfg.compile, device))
    log = RunLogger(run_dir, enabled=dist.is_main, purge_step=step + 1 if ckpt else None)
    diag = Diagnostics(model) if cfg.diagnostics_interval and dist.is_main else None
    # reference tables built once; sequence corpora only (BLEU needs one example per line)
    evaluator = SampleEvaluator(corpus, tokenizer) if cfg.eval_samples and data.mode == "sequence" and dist.is_main else None
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps({"train": asdict(cfg), "model": asdict(model_cfg)}, indent=2))

    saved_step = step if ckpt else None  # step of the newest last.pt, for error messages

    def non_finite(what, value):
        kept = f"{last_path} (step {saved_step}) is intact" if saved_step is not None else "no checkpoint was written yet"
        fp32 = "" if dtype == torch.float32 else f", or train in float32 (now {str(dtype).replace('torch.', '')})"
        return FloatingPointError(f"non-finite {what} ({value}) at step {step}; stopped before it reached the weights "
                                  f"or a checkpoint, and {kept}. Lower lr (now {cfg.lr}) or keep grad_clip > 0 "
                                  f"(now {cfg.grad_clip}){fp32}; then resume")

    def checkpoint(path):
        nonlocal saved_step
        bad = [n for n, p in unwrap(model).named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:  # never overwrite a good checkpoint with broken weights
            raise non_finite("parameters", ", ".join(bad[:5]))
        saved_step = step if path == last_path else saved_step
        if not dist.is_main:
            return
        save_checkpoint(path, {
            "model_name": cfg.model, "model_config": asdict(model_cfg), "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "tokenizer": tokenizer.state_dict(), "train_config": asdict(cfg),
            "step": step, "best_val": best_val, "rng": runtime.rng_state(), "environment": runtime.environment(dist),
            "timing": {"train_seconds": prior.get("train_seconds", 0.0) + time.time() - t_start,
                       "step_seconds": step_seconds, "steps_timed": steps_timed},
        })

    def draw_samples(n, seed):
        g = torch.Generator(device=device).manual_seed(seed)
        start = torch.full((n, 1), BOS_ID, dtype=torch.long, device=device)
        out = generate(model, start, data.block_size, temperature=cfg.temperature,
                       top_k=cfg.top_k or None, generator=g)
        return [tokenizer.decode(row[1:].tolist()) for row in out]

    def evaluate_and_checkpoint():
        nonlocal best_val
        val = lm_nll(model, data.eval_batches("val", cfg.eval_batch_size), device, amp)
        log.scalar("val/nll", val["nll"], step)
        log.scalar("val/bits", val["bits"], step)
        samples = draw_samples(cfg.num_samples, seed=cfg.seed + step)
        log.samples("samples", samples, step)
        if evaluator is not None:  # the eval/ tags every trainer shares; a fixed seed, so the curve tracks the model
            evaluator(draw_samples(cfg.eval_samples, seed=cfg.seed + 1), step, log)
        if val["nll"] < best_val:
            best_val = val["nll"]
            checkpoint(best_path)
        checkpoint(last_path)
        return val

    if cfg.max_minutes:
        reserve_final_scoring(deadline, data, cfg, evaluator, lambda: lm_nll(
            model, data.eval_batches("val", cfg.eval_batch_size), device, amp), draw_samples)

    # ---- training
    if closed_form and step == 0:
        # counted in one complete pass over the training split, no gradient descent
        model.fit((x.to(device), y.to(device)) for x, y in data.eval_batches("train", cfg.eval_batch_size))
        evaluate_and_checkpoint()
    t_start, t_last, tokens_since = time.time(), time.time(), 0
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (cfg.progress and dist.is_main), dynamic_ncols=True, desc=cfg.model)
    while step < cfg.max_steps and not closed_form:
        t_step = time.perf_counter()
        lr = runtime.lr_at(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # the global batch is the same on every rank; each rank takes its rows, in micro-batches
        x, y = data.train_batch(step, cfg.batch_size, cfg.seed)
        n_global = int((y >= 0).sum())  # target tokens in the global batch
        micro = list(zip(x[dist.rank::dist.world].chunk(cfg.grad_accum), y[dist.rank::dist.world].chunk(cfg.grad_accum)))
        diagnose = diag is not None and (step + 1) % cfg.diagnostics_interval == 0
        if diagnose:
            diag.start()  # forward hooks for this step only
        optimizer.zero_grad(set_to_none=True)
        loss_sum, n_rank = 0.0, 0
        for i, (xm, ym) in enumerate(micro):
            xm, ym = xm.to(device), ym.to(device)
            n_micro = int((ym >= 0).sum())
            # only the last micro-step all-reduces gradients across ranks
            last_micro = i == len(micro) - 1
            with (contextlib.nullcontext() if last_micro or not dist.enabled else train_model.no_sync()):
                with amp():
                    _, loss = train_model(xm, ym)
                if not torch.isfinite(loss):
                    raise non_finite("training loss", loss.item())
                # this micro-batch's share of the global per-token mean (x world, because DDP
                # averages gradients over ranks): the same gradient as one big batch
                (loss * (n_micro / n_global) * dist.world).backward()
            loss_sum, n_rank = loss_sum + loss.item() * n_micro, n_rank + n_micro
        loss = torch.tensor(loss_sum / max(n_rank, 1))  # mean over this rank's tokens, for logging
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if not torch.isfinite(grad_norm):  # the same on every rank (gradients are all-reduced)
            raise non_finite("gradient norm", grad_norm.item())
        if diagnose:
            diag.before_step()  # removes the hooks; gradients as the optimizer gets them, weights before the step
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels are asynchronous: time the finished step
        if not diagnose:  # a diagnostics step carries hooks and weight copies: left out of the step time
            step_seconds, steps_timed = step_seconds + time.perf_counter() - t_step, steps_timed + 1
        step += 1
        if diagnose:
            log_stats(log, diag.after_step(), step)
        tokens_since += n_global
        bar.update(1)
        if step % cfg.log_interval == 0:
            now = time.time()
            log.scalars({"train/loss": loss.item(), "lr": lr, "grad_norm": grad_norm.item(),
                         "tokens_per_sec": tokens_since / max(now - t_last, 1e-9)}, step)
            bar.set_postfix(loss=f"{loss.item():.4f}", best_val=f"{best_val:.4f}")
            t_last, tokens_since = now, 0
        out_of_time = deadline.expired()
        if step % cfg.eval_interval == 0 or step == cfg.max_steps or out_of_time:
            val, seconds = timed(evaluate_and_checkpoint)
            deadline.observe(seconds)
            say(f"step {step}: train loss {loss.item():.4f}, val nll {val['nll']:.4f}")
        elif cfg.ckpt_interval and step % cfg.ckpt_interval == 0:
            checkpoint(last_path)
        if out_of_time:
            say(f"wall-clock budget of {cfg.max_minutes} min reached at step {step}")
            break
    bar.close()
    train_seconds = prior.get("train_seconds", 0.0) + time.time() - t_start

    # ---- final: the best-on-validation checkpoint, scored once on test
    if best_path.exists():
        model.load_state_dict(load_checkpoint(best_path)["model"])
    test = lm_nll(model, data.eval_batches("test", cfg.eval_batch_size), device, amp)
    val = lm_nll(model, data.eval_batches("val", cfg.eval_batch_size), device, amp)
    samples = draw_samples(cfg.num_samples, seed=cfg.seed)
    metrics = {"test/nll": test["nll"], "test/bits": test["bits"], "test/ppl": test["ppl"], "val/nll_best": val["nll"],
               "params": n_params, "steps": step, "train_seconds": train_seconds,
               "data/oov_val": data.oov["val"], "data/oov_test": data.oov["test"],
               "ms_per_step": 1000 * step_seconds / steps_timed if steps_timed else None}
    log.samples("samples/final", samples, step)
    log.hparams({**asdict(cfg), **{f"model.{k}": v for k, v in asdict(model_cfg).items()}},
                {"hparam/test_nll": test["nll"], "hparam/val_nll": val["nll"]}, step)
    log.close()
    dist.close()
    if dist.is_main:
        write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        write_text(run_dir / "samples.txt", "\n".join(samples) + "\n")
        print(f"test nll {test['nll']:.4f} nats/token ({test['bits']:.4f} bits, ppl {test['ppl']:.3f}) "
              f"over {test['tokens']:,} tokens; val nll {val['nll']:.4f}; {step} steps in {train_seconds:.0f}s")
        print("samples:\n" + "\n".join("  " + t for t in samples))
        print(f"run directory: {run_dir}  (tensorboard --logdir {cfg.out_dir}); {deadline.summary()}")
    lock.release()
    return metrics

