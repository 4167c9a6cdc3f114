"""What a job runs: one cell's function, from its spec.json, its result written atomically.

    python -m experiments.jobs.worker runs/<experiment>/jobs/<cell>/spec.json

The local launcher starts this as a fresh interpreter (never a fork of the command: torch's
threads and the tokenizers' pools do not survive a fork); the slurm launcher submits `run_cell`
through submitit, wrapped in `SlurmCell`, whose `checkpoint` requeues the job with the cell's
resume settings when SLURM signals its time limit or a preemption.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path

import submitit

from experiments.core.checkpoint import write_text


def target_function(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def distributed_rank(tasks: int) -> int:
    """Under SLURM with several tasks: the torch.distributed environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...) from the job's, for the trainer's DDP path; -> this task's rank."""
    if tasks <= 1 or "SLURM_JOB_ID" not in os.environ:
        return 0
    env = submitit.helpers.TorchDistributedEnvironment().export()
    return env.rank


def run_cell(spec_path: str | Path, requeued: bool = False):
    """Run the cell of this spec; -> its result (also written to result.json by rank 0)."""
    spec_path = Path(spec_path)
    spec = json.loads(spec_path.read_text())
    folder = spec_path.parent
    if spec.get("threads"):
        import torch
        torch.set_num_threads(spec["threads"])
    rank = distributed_rank(int(os.environ.get("SLURM_NTASKS", 1)))
    if rank == 0:
        write_text(folder / "worker.json", json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                       "started": time.time(), "requeued": requeued}))
    kwargs = spec["resume_kwargs"] if requeued and spec.get("resume_kwargs") is not None else spec["kwargs"]
    print(f"cell {spec['name']}: {spec['target']}" + (" (requeued: resuming)" if requeued else ""), flush=True)
    try:
        result = target_function(spec["target"])(**kwargs)
    except BaseException as e:
        if rank == 0:
            write_text(folder / "error.json", json.dumps({"type": type(e).__name__, "message": str(e)[:4000]}))
        raise
    if rank == 0:
        write_text(folder / "result.json", json.dumps({"digest": spec["digest"], "result": result}, default=str))
    return result


class SlurmCell(submitit.helpers.Checkpointable):
    """run_cell as a submitit job that SLURM may stop at its time limit or preempt: submitit calls
    `checkpoint` on the signal and requeues what it returns, the same cell resuming its run."""

    def __call__(self, spec_path: str, requeued: bool = False):
        return run_cell(spec_path, requeued)

    def checkpoint(self, spec_path: str, requeued: bool = False):
        print("requeued by SLURM (time limit or preemption): the job resumes from its last checkpoint", flush=True)
        return submitit.helpers.DelayedSubmission(SlurmCell(), spec_path, True)


def main(argv=None) -> int:
    from experiments.core.cli import TEXTDUEL_ERRORS
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m experiments.jobs.worker <cell folder>/spec.json", file=sys.stderr)
        return 2
    try:
        run_cell(argv[0])
    except TEXTDUEL_ERRORS as e:  # a message that names the fix: no traceback under it
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
