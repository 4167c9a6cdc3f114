"""A thin layer over TensorBoard's SummaryWriter: one run directory per run,
hierarchical tags (train/loss, val/nll, gan/d_loss), text samples, and hparams with
the final metrics so TensorBoard's HPARAMS view lists runs side by side.

Only the process that owns the run writes (rank 0 in distributed training); the
others get a logger whose methods do nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary


def wait_for_a_later_event_file(run_dir: Path) -> None:
    """Wait (at most a second) until a new event file's name sorts after every one already in
    run_dir. TensorBoard reads a directory's event files in name order, and the name is
    events.out.tfevents.<whole seconds>.<host>.<pid>.<counter>: a run reopened within the same
    second (a quick resume; in-process in the tests) can get a name that sorts first (counter 10
    < 9 as text), and then the resumed points are read before the old ones and the restart
    marker purges nothing."""
    stamps = [int(p.name.split(".")[3]) for p in run_dir.glob("events.out.tfevents.*")
              if p.name.split(".")[3].isdigit()]
    if stamps:  # at most a second: a file stamped in the future (a copied run, clock skew) is not waited for
        time.sleep(min(1.0, max(0.0, max(stamps) + 1 - time.time())))


class RunLogger:
    def __init__(self, run_dir: str | Path, enabled: bool = True, purge_step: int | None = None):
        """purge_step: on resume, the first step not covered by the checkpoint (its step + 1).
        TensorBoard then drops what a killed process logged at steps >= purge_step after
        its last checkpoint, so the resumed curves do not show those points twice."""
        self.run_dir = Path(run_dir)
        if enabled:
            wait_for_a_later_event_file(self.run_dir)
        self.writer = SummaryWriter(str(self.run_dir), purge_step=purge_step) if enabled else None

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer:
            self.writer.add_scalar(tag, float(value), step)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        for k, v in values.items():
            self.scalar(f"{prefix}{k}", v, step)

    def histogram(self, tag: str, values, step: int) -> None:
        if self.writer:
            self.writer.add_histogram(tag, values, step)

    def samples(self, tag: str, texts: list[str], step: int) -> None:
        """Text samples, one per line (markdown: two trailing spaces keep the line breaks)."""
        if self.writer:
            body = "  \n".join(f"{i:2d}. {t if t else '(empty)'}" for i, t in enumerate(texts))
            self.writer.add_text(tag, body, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict, metrics: dict, step: int = 0) -> None:
        """Hyperparameters and final metrics in the same run directory as the curves
        (SummaryWriter.add_hparams would open a separate sub-run)."""
        if not self.writer:
            return
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        for summary in hparams_summary(clean, metrics):
            self.writer.file_writer.add_summary(summary)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def flush(self):
        if self.writer:
            self.writer.flush()

    def close(self):
        if self.writer:
            self.writer.close()
