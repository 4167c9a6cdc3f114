"""Functions the job layer's tests run as cells: importable by name in a job's fresh interpreter
(the project folder is on its path, so `tests.job_targets` is)."""

import json
import os
import time
from pathlib import Path


def echo(value, seconds: float = 0.0):
    """-> value, after `seconds`."""
    time.sleep(seconds)
    return value


def fail(message: str):
    print("about to fail", flush=True)
    raise RuntimeError(message)


def read_and_add(path: str, add: int):
    """A cell that reads another cell's result.json (as the comparison's cells read the judge's)."""
    return json.loads(Path(path).read_text())["result"] + add


def pid_then_sleep(path: str, seconds: float):
    """Writes its pid to path, then sleeps: a job to kill or cancel."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def count(path: str, n: int, step_seconds: float, resume: bool = False):
    """Counts to n, one step every step_seconds, its state written atomically after each: a job that
    resumes where it was stopped (resume=True: the cell's resume_kwargs, when requeued) ->
    {"total": the sum of the steps, "attempts": how many jobs it took}."""
    state_path = Path(path)
    state = json.loads(state_path.read_text()) if resume and state_path.is_file() else {"step": 0, "total": 0,
                                                                                         "attempts": 0}
    state["attempts"] += 1
    while state["step"] < n:
        time.sleep(step_seconds)
        state["total"] += state["step"]
        state["step"] += 1
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, state_path)
    return {"total": state["total"], "attempts": state["attempts"]}
