"""A cell: one job of a grid, a function of its settings alone, with a folder of its own.

    <folder>/spec.json     what the job runs: the target function ("module:function") and its
                           keyword arguments (plain JSON), the thread count, the key its result
                           depends on
    <folder>/job.json      who runs it: the launcher and the process id (local) or job id (slurm)
    <folder>/worker.json   the process that ran it, written by the job when it starts (host, pid):
                           a run lock left by that process is cleared once its job has ended
    <folder>/log.txt       its output (slurm: submitit's <job id>_0_log.out beside it)
    <folder>/result.json   what the function returned, with the digest of the key it was computed
                           for: written atomically when the job succeeds, so a result is whole or absent
    <folder>/error.json    the exception of a job that raised one

Every result comes back to the command through result.json (launch() reads them; inline reads its
own through JSON too), so the report is the same under inline, local and slurm.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from experiments.core.checkpoint import write_text


class JobsFailed(RuntimeError):
    """Some cells of a grid failed; `results` holds the finished ones', `failures` {cell: reason}."""

    def __init__(self, message: str, results: dict, failures: dict):
        super().__init__(message)
        self.results, self.failures = results, failures


@dataclass
class Cell:
    name: str                    # stable and unique in the grid ("seed1/lstm"): the progress table, messages
    folder: Path                 # jobs/<cell>/ under its experiment folder
    target: str                  # "package.module:function", called as function(**kwargs) in the job
    kwargs: dict                 # plain JSON: everything the job needs
    key: dict | None = None      # what its result depends on (default: kwargs); a stored result is reused
                                 # (--reuse true) only when its digest matches
    resume_kwargs: dict | None = None  # the kwargs of the same job requeued after a timeout or preemption
    run_dir: Path | None = None  # the run folder the job writes (its lock is cleared once the job ended)
    after: tuple[str, ...] = ()  # names of cells whose results it reads: it starts when they are done
    gpus: bool = True            # whether the job uses a GPU when one is there (slurm.gpus_per_job)
    tasks: int = 1               # processes of the job (> 1: a DDP training, slurm only)

    def __post_init__(self):
        self.folder = Path(self.folder)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_./-]*", self.name):
            raise ValueError(f"cell name {self.name!r}: letters, digits and _ . / - only")

    def digest(self) -> str:
        body = json.dumps({"target": self.target, "key": self.kwargs if self.key is None else self.key},
                          sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:20]

    @property
    def spec_path(self) -> Path:
        return self.folder / "spec.json"

    @property
    def result_path(self) -> Path:
        return self.folder / "result.json"

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    def write_spec(self, threads: int = 0) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in ("result.json", "error.json", "worker.json"):  # a new job: the old one's outcome goes
            (self.folder / stale).unlink(missing_ok=True)
        spec = {"name": self.name, "target": self.target, "kwargs": self.kwargs, "resume_kwargs": self.resume_kwargs,
                "threads": threads, "digest": self.digest()}
        write_text(self.spec_path, json.dumps(spec, indent=1, default=str))
        return self.spec_path


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def stored_result(cell: Cell) -> tuple[bool, object]:
    """(True, result) when the cell's folder holds a result computed for its current key."""
    stored = read_json(cell.result_path)
    if stored is None or stored.get("digest") != cell.digest():
        return False, None
    return True, stored["result"]


def write_job(cell: Cell, record: dict) -> None:
    write_text(cell.folder / "job.json", json.dumps(record, indent=1))


def job_record(cell: Cell) -> dict | None:
    return read_json(cell.folder / "job.json")


def depends(cells: list[Cell]) -> None:
    """Every `after` names a cell of the grid, listed earlier (the order jobs start in)."""
    seen = set()
    for cell in cells:
        missing = [a for a in cell.after if a not in seen]
        if missing:
            raise ValueError(f"cell {cell.name} runs after {missing}, which are not earlier cells of the grid")
        if cell.name in seen:
            raise ValueError(f"two cells are named {cell.name!r}")
        seen.add(cell.name)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log ('' when there is none)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


# what may differ between two runs of the same grid: how long things took, where they were written,
# the command line that ran them
VOLATILE = ("seconds", "timing", "minutes", "command", "run_dir", "runs_dir", "out_dir", "table_dir", "date",
            "per_step", "val_pass", "text")


def differences(a, b, roots: tuple[str, str] = ("", ""), path: str = "") -> list[str]:
    """Where two results (results.json contents) differ, VOLATILE keys aside and each run's own folder
    (roots) read as the same: a list of 'path: a != b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if any(v in str(k) for v in VOLATILE):
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: present in one only")
            else:
                out += differences(a[k], b[k], roots, f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, roots, f"{path}[{i}]")]
    if isinstance(a, str) and isinstance(b, str) and roots[0]:
        a, b = a.replace(roots[0], "<folder>"), b.replace(roots[1], "<folder>")
    same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN == NaN here
    return [] if same else [f"{path}: {a!r} != {b!r}"]
