"""What every trainer shares: one run session, one guarded optimizer step, one MLE step.

Composition, not a trainer class hierarchy. experiments.trainers.lm and experiments.trainers.gan
each open a `RunSession` on their run directory, restore their own state from
`session.ckpt` when resuming, hand every optimizer step to `optimizer_update` (or, for
teacher forcing, `mle_step`), every checkpoint to `session.save`, and their results to
`session.finish`. The LM-score model (experiments.scoring.lm_score) and the benchmark
(experiments.bench) train through the same `mle_step`.

The guarantees, each in one place here:
- one writer per run directory (core/runlock.py), released at the end;
- the divergence guard (`Guard`): a non-finite loss or gradient norm stops the run before
  the optimizer step, and non-finite weights are never saved, so a checkpoint never holds
  broken weights; the error names the last good last.pt, which is left intact;
- checkpoints, config.json, metrics.json and samples.txt are written atomically
  (core/checkpoint.py); last.pt carries the RNG state, the environment that bitwise
  exactness depends on (runtime.environment) and the wall-clock accounting, which
  accumulates across resumes;
- on resume, settings and environment that changed since the checkpoint are printed, and
  those that break bitwise exactness are flagged (runtime.say_resume_changes).
"""

from __future__ import annotations

import itertools
import contextlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm import tqdm

from datasets.batching import build_tokenizer, micro_batches
from datasets.bpe import TOKENIZER_FILE
from datasets.tokenizers import Tokenizer
from experiments.core import runtime
from experiments.core.checkpoint import load_resume_checkpoint, save_checkpoint, write_text
from experiments.core.logger import RunLogger
from experiments.core.runlock import RunLock

# a single process: what mle_step and optimizer_update assume outside a torchrun launch
LOCAL = SimpleNamespace(rank=0, world=1, enabled=False, is_main=True)


class Guard:
    """The divergence guard. `check` stops the run at a non-finite value before it reaches the
    weights; `check_weights` refuses to save non-finite weights. The error says which checkpoint
    is the last good one (last_path at saved_step, or none yet) and what to change."""

    def __init__(self, last_path: Path | None = None, saved_step: int | None = None,
                 advice: str = "Lower the learning rate or keep grad_clip > 0"):
        self.last_path, self.saved_step, self.advice = last_path, saved_step, advice

    def error(self, what: str, value, step: int) -> FloatingPointError:
        kept = (f"The last good checkpoint, {self.last_path} (step {self.saved_step}) is intact"
                if self.saved_step is not None else "No checkpoint had been written yet")
        return FloatingPointError(f"non-finite {what} ({value}) at step {step}; stopped before it reached the "
                                  f"weights or a checkpoint. {kept}. {self.advice}; then resume")

    def check(self, what: str, value: float, step: int) -> None:
        if not math.isfinite(value):
            raise self.error(what, value, step)

    def check_weights(self, modules: dict, step: int) -> None:
        for name, module in modules.items():
            bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise self.error(f"weights in the {name}", ", ".join(bad[:5]), step)


def optimizer_update(model, optimizer, grad_clip: float, guard: Guard, step: int, dist=LOCAL,
                     average_grads: bool = False, before_step=None) -> float:
    """The one optimizer step of every trainer: (average the gradients over ranks by hand, for a
    model that DDP does not wrap), clip the global norm (grad_clip 0 = off), stop on a non-finite
    norm, step. Returns the norm before clipping. before_step() runs just before the update
    (training diagnostics read gradients and weights there)."""
    if average_grads and dist.enabled:
        import torch.distributed as tdist
        for p in model.parameters():
            if p.grad is not None:
                tdist.all_reduce(p.grad)
                p.grad /= dist.world
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    guard.check("gradient norm", norm.item(), step)  # the same on every rank (gradients are all-reduced)
    if before_step is not None:
        before_step()
    optimizer.step()
    return norm.item()


def lm_loss(model, x, y):
    """The teacher-forcing loss of every LM of baselines/ (and of the GAN generator): mean per-token NLL."""
    return model(x, y)[1]


def mle_step(model, optimizer, x, y, guard: Guard, step: int, *, grad_clip: float, loss_fn=lm_loss,
             train_model=None, dist=LOCAL, grad_accum: int = 1, amp=contextlib.nullcontext,
             average_grads: bool = False, before_step=None, normalizer: float | None = None,
             micro_tokens: int | None = None) -> tuple[float, float, int]:
    """One teacher-forcing optimizer step on the global batch (x, y); returns (mean loss over
    this rank's target tokens, gradient norm, target tokens in the global batch).

    The objective is the global batch's summed token loss divided by `normalizer`: by default the
    batch's own target-token count (the per-token mean); a fixed number under batching = "length"
    (LMData.step_settings), so that a token's weight does not depend on the lengths of
    the lines it was batched with. Each rank takes its rows of the global batch, in grad_accum
    micro-batches (or, with `micro_tokens`, in length-sorted micro-batches of at most that many
    positions, each trimmed to its longest row: datasets.batching.micro_batches); each micro-batch
    contributes its share (x world, because DDP averages over ranks), so the gradient is that of
    one big batch however it is split. Only the last micro-step all-reduces
    (no_sync on the others). loss_fn(train_model, x, y) -> scalar loss; train_model is the
    (DDP- or compile-) wrapped model, model the raw one whose parameters are clipped."""
    train_model = model if train_model is None else train_model
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    n_global = int((y >= 0).sum())
    denominator = n_global if normalizer is None else normalizer
    x, y = x[dist.rank::dist.world], y[dist.rank::dist.world]
    if micro_tokens:
        lengths = (y >= 0).sum(1)  # real targets per row: the row's inputs and targets end there
        micro = [(x[g, :int(lengths[g].max())], y[g, :int(lengths[g].max())])
                 for g in micro_batches(lengths, micro_tokens)]
    else:
        micro = list(zip(x.chunk(grad_accum), y.chunk(grad_accum)))
    optimizer.zero_grad(set_to_none=True)
    loss_sum, n_rank = 0.0, 0
    for i, (xm, ym) in enumerate(micro):
        xm, ym = xm.to(device), ym.to(device)
        n_micro = int((ym >= 0).sum())
        sync = i == len(micro) - 1 or not dist.enabled or average_grads
        with contextlib.nullcontext() if sync else train_model.no_sync():
            with amp():
                loss = loss_fn(train_model, xm, ym)
            guard.check("training loss", loss.item(), step)
            (loss * (n_micro / denominator) * dist.world).backward()
        loss_sum, n_rank = loss_sum + loss.item() * n_micro, n_rank + n_micro
    norm = optimizer_update(model, optimizer, grad_clip, guard, step, dist, average_grads, before_step)
    return loss_sum / max(n_rank, 1), norm, n_global


class RunSession:
    """One trainer run in out_dir/run_name: lock, resume, guarded saves, logger, timing, finish.
    Every rank opens one; only rank 0 (dist.is_main) writes files."""

    def __init__(self, cfg, run_dir: Path, dist, advice: str):
        self.cfg, self.run_dir, self.dist = cfg, Path(run_dir), dist
        self.last_path = self.run_dir / "last.pt"
        self.lock = RunLock(self.run_dir, enabled=dist.is_main).acquire()  # one writer per run directory
        self.ckpt = load_resume_checkpoint(self.last_path) if cfg.resume else None
        self.guard = Guard(self.last_path, self.ckpt["step"] if self.ckpt else None, advice)
        self.say = tqdm.write if dist.is_main else (lambda *a, **k: None)  # prints without breaking the bar
        self.log = None
        self.padding_share = None  # say_batches
        # wall-clock accounting accumulates across resumes; it only feeds logs and metrics.json
        prior = (self.ckpt or {}).get("timing") or {"train_seconds": (self.ckpt or {}).get("train_seconds", 0.0)}
        self.prior_seconds = prior.get("train_seconds", 0.0)
        # seconds and count of timed optimizer steps, by kind (the LM's "step"; the GAN's "pretrain", "adversarial")
        self.step_times = {k: list(v) for k, v in prior.get("steps", {}).items()}
        if "steps_timed" in prior:  # a last.pt of an earlier version: the LM trainer's one kind
            self.step_times["step"] = [prior.get("step_seconds", 0.0), prior["steps_timed"]]
        self.t_start = time.time()

    def resumed(self, where: str) -> None:
        """Say what was resumed and what changed since (flagging what breaks bitwise exactness)."""
        if self.dist.is_main:
            print(f"resumed {self.last_path} {where}")
            runtime.say_resume_changes(self.ckpt["train_config"], self.cfg, self.ckpt.get("environment"),
                                       runtime.environment(self.dist))

    def tokenizer(self, corpus):
        """The run's tokenizer: learnt from the training split (build_tokenizer), except that a resumed
        run at bpe level reads its checkpoint's back (never learnt again). At bpe level it is also
        written to the run folder as tokenizer.json, beside the checkpoints that hold it too."""
        state = (self.ckpt or {}).get("tokenizer") or {}
        if corpus.level == "bpe" and state.get("level") == "bpe":
            corpus.extras["bpe"] = Tokenizer.from_state(state)  # what every later build_tokenizer(corpus) returns
        tokenizer = build_tokenizer(corpus)
        if tokenizer.level == "bpe" and self.dist.is_main:
            write_text(self.run_dir / TOKENIZER_FILE, tokenizer.to_json())
        return tokenizer

    def say_batches(self, data, batch_size: int, seed: int) -> None:
        """Print how training batches are made and their padding share (computed / real tokens);
        open_log records the share as data/padding_share."""
        self.say(data.batching_summary(batch_size, seed))
        self.padding_share = data.padding_share(batch_size, seed)

    def open_log(self, step: int, sections: dict) -> RunLogger:
        """The TensorBoard logger (on resume it hides what a killed process logged after its last
        checkpoint), and config.json with the resolved settings by section."""
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main, purge_step=step + 1 if self.ckpt else None)
        if self.padding_share is not None:
            self.log.scalar("data/padding_share", self.padding_share, step)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.run_dir / "config.json", json.dumps({k: asdict(v) for k, v in sections.items()}, indent=2))
        return self.log

    def start_clock(self) -> None:
        self.t_start = time.time()

    def time_step(self, seconds: float, kind: str = "step") -> None:
        """Time inside optimizer steps only (no evaluation, logging, checkpoints), for ms_per_step."""
        total = self.step_times.setdefault(kind, [0.0, 0])
        total[0], total[1] = total[0] + seconds, total[1] + 1

    def train_seconds(self) -> float:
        return self.prior_seconds + time.time() - self.t_start

    def ms_per_step(self, kind: str = "step") -> float | None:
        seconds, count = self.step_times.get(kind, (0.0, 0))
        return 1000 * seconds / count if count else None

    def due(self, step: int, last_step: int, stop: bool, every: int = 0) -> str | None:
        """The cadence after an optimizer step (or a round): "eval" (evaluate and save) every `every`
        steps (0: eval_interval), at the last step and when the run must stop; "save" (last.pt
        only) every ckpt_interval steps; else None."""
        if step % (every or self.cfg.eval_interval) == 0 or step == last_step or stop:
            return "eval"
        if self.cfg.ckpt_interval and step % self.cfg.ckpt_interval == 0:
            return "save"
        return None

    def save(self, path: Path, payload: dict, modules: dict, step: int) -> None:
        """An atomic checkpoint of the trainer's payload plus what every resume needs (step, settings,
        RNG, environment, timing); refused, with the guard's error, if any module's weights are
        not finite, so a good checkpoint is never overwritten by a diverged model."""
        self.guard.check_weights(modules, step)
        if path == self.last_path:
            self.guard.saved_step = step
        if not self.dist.is_main:
            return
        save_checkpoint(path, {
            **payload, "train_config": asdict(self.cfg), "step": step, "rng": runtime.rng_state(),
            "environment": runtime.environment(self.dist),
            "timing": {"train_seconds": self.train_seconds(), "steps": self.step_times},
        })

    def finish(self, metrics: dict, samples: list[str], hparams: dict, hparam_metrics: dict, step: int,
               n_show: int) -> None:
        """The end of a run: final samples and hparams into TensorBoard, metrics.json and samples.txt
        written atomically, the lock released."""
        self.log.samples("samples/final", samples[:n_show], step)
        self.log.hparams(hparams, hparam_metrics, step)
        self.log.close()
        if self.dist.is_main:
            write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2))
            write_text(self.run_dir / "samples.txt", "\n".join(samples) + "\n")
        self.lock.release()
