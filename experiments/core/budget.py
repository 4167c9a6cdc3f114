"""A wall-clock budget that includes the final scoring (`max_minutes`).

Training stops when the time left is what the rest of the run is expected to need: the
evaluation at the stop and the final scoring (NLL passes, samples, their metrics). That
cost is measured, not guessed: before training, `probe` times the same operations once on
the untrained model (the worst case for sampling, since an untrained model seldom emits
<eos> and every sample runs to full length), and the trainer turns those timings into the
reserve with `reserve`. Every evaluation during training is timed too (`observe`): when the
machine turns out slower than at the probe (another job started, say), the reserve grows
by the same factor. The probe runs between a saved and a restored RNG state, so a run with
a budget draws the same random numbers as one without.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time

from experiments.core import runtime
from experiments.core.config import ConfigError

SAFETY = 1.25  # the reserve is the measured estimate times this (timings on a busy machine vary)
# samples drawn by the probe; the cost of more is extrapolated linearly, which overestimates it
# (a larger batch costs less per sample), so the reserve errs on the side of finishing in time
PROBE_SAMPLES = 64


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def probe(**operations) -> dict[str, float]:
    """{name: seconds} of each zero-argument callable, run once with the RNG state restored after."""
    state = runtime.rng_state()
    try:
        return {name: timed(fn)[1] for name, fn in operations.items()}
    finally:
        runtime.set_rng_state(state)


class Deadline:
    """max_minutes for a whole run (0 = none); `expired()` is true once training must stop so
    that the reserved seconds still fit. Under torchrun every rank agrees (dist.any)."""

    def __init__(self, minutes: float, dist=None):
        self.seconds, self.dist = minutes * 60, dist
        self.start, self.reserved, self.base, self.predicted_eval = time.time(), 0.0, 0.0, 0.0

    def reserve(self, seconds: float, what: str, evaluation: float = 0.0) -> None:
        """Keep `seconds` (times SAFETY) of the budget for `what`; say so, or refuse a budget it eats.
        evaluation: what one evaluation during training is expected to take, from the same probe."""
        if not self.seconds:
            return
        self.reserved = self.base = SAFETY * seconds
        self.predicted_eval = evaluation
        if self.reserved >= 0.9 * self.seconds:
            raise ConfigError(f"max_minutes {self.seconds / 60:g} leaves no time to train: {what} is estimated at "
                              f"{self.reserved / 60:.2f} min on this machine. Raise max_minutes (above "
                              f"{math.ceil(self.reserved / 0.9 / 6) / 10:g}), or score fewer samples (eval_samples, "
                              "final_samples or num_samples)")
        print(f"time budget {self.seconds / 60:g} min: {self.reserved:.0f} s kept for {what}, measured; training "
              f"stops by minute {(self.seconds - self.reserved) / 60:.2f}", flush=True)

    def observe(self, evaluation_seconds: float) -> None:
        """An evaluation took this long: scale the reserve by how much slower than predicted it was."""
        if self.seconds and self.predicted_eval > 0:
            self.reserved = self.base * max(1.0, evaluation_seconds / self.predicted_eval)

    def summary(self) -> str:
        """How the budget was spent, for the end of the run."""
        took = time.time() - self.start
        return (f"wall time {took:.0f} s of the {self.seconds:.0f} s budget ({self.reserved:.0f} s had been kept for "
                "the final scoring)") if self.seconds else f"wall time {took:.0f} s"

    def expired(self) -> bool:
        late = bool(self.seconds) and time.time() - self.start >= self.seconds - self.reserved
        return self.dist.any(late) if self.dist is not None else late


def check_budget(cfg, build, reserve) -> None:
    """Refuse, before anything trains, a max_minutes that the final scoring alone would eat: the run
    is built by `build(cfg)` in a scratch folder that is removed after (nothing of it is kept) and
    measured as the run measures itself at its start, by `reserve(deadline, run)`; the RNG state is
    restored after. A comparison asks this of every entry it will train, so that a budget one entry
    cannot keep is refused before the others have trained for minutes."""
    if not cfg.max_minutes:
        return
    state = runtime.rng_state()
    with tempfile.TemporaryDirectory(prefix="textduel-budget-") as scratch:
        run = build(dataclasses.replace(cfg, out_dir=scratch, run_name="budget-check", resume=False))
        try:
            reserve(Deadline(cfg.max_minutes, run.dist), run)
        finally:
            run.session.lock.release()
            runtime.set_rng_state(state)
