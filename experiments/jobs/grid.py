"""Run a grid's cells under a launcher and gather their results: `launch(cells, ...)`.

The rules, the same under every launcher:
- `reuse` names the cells whose stored result may be used (the command decides: with --reuse true,
  a cell whose run is finished); such a cell with a result for its current key is not run again.
- A cell whose job an earlier command started and which is still queued or running is never
  started a second time: under `reuse` it is waited on (its result gathered), otherwise the
  command is refused with the job's id, so that two writers never share a run folder.
- A cell starts once the cells it reads (`after`) are done; a cell whose dependency failed is
  failed without running.
- A failed job is reported as it fails: its cell, the exit reason, the last 20 lines of its log and
  the log's path. The other cells go on; at the end JobsFailed lists the failures (the command
  exits non-zero), with the finished cells' results kept for a re-run with --reuse true.
- Ctrl-C, or a SIGTERM to the command (kill, a scheduler cancelling it, the only stop of a nohup'd
  one), cancels every job this command started (its child processes by their ids, its SLURM jobs
  through submitit) and says which; the command exits 130 (Ctrl-C) or 143 (SIGTERM). Local jobs run
  in sessions of their own, so without this a terminated command would leave them running,
  writing into run folders that no command watches.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time

from experiments.core.config import ConfigError
from experiments.jobs.cells import Cell, JobsFailed, depends, read_json, stored_result, tail, write_job
from experiments.jobs.config import LaunchConfig, SlurmConfig, job_slots, threads_per_job
from experiments.jobs.launchers import LocalLauncher, SlurmHandle, SlurmLauncher, SlurmQueue, attach, check_slurm
from experiments.jobs.progress import Progress

POLL_SECONDS = 1.0
TAIL_LINES = 20
RESULT_GRACE = 10  # seconds a SLURM job's result may take to appear after the job has left the queue


def gpu_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch(cells: list[Cell], cfg: LaunchConfig, slurm: SlurmConfig, reuse=(), gather: str = "") -> dict | None:
    """Run the cells; -> {cell name: result}, or None when jobs were submitted without waiting
    (slurm, wait = false: `gather` is the command that collects them later)."""
    depends(cells)
    if cfg.launcher == "inline":
        return run_inline(cells, set(reuse))
    queue = SlurmQueue()
    if cfg.launcher == "local":
        gpus = gpu_count()
        slots = job_slots(cfg, gpus)
        threads = threads_per_job(cfg, slurm, slots)
        launcher = LocalLauncher(threads, gpus, slots)
        print(f"launcher local: {slots} jobs at once, {threads} thread(s) each; logs in each cell's jobs/ folder")
    else:
        threads = threads_per_job(cfg, slurm, 1)
        launcher = SlurmLauncher(slurm, threads, queue)
        print(f"launcher slurm: one job per cell ({slurm.cpus_per_job} CPU(s), {slurm.mem_gb:g} GB, "
              f"{slurm.gpus_per_job} GPU(s), {slurm.time_min} min each); logs in each cell's jobs/ folder")
    return Grid(cells, launcher, queue, set(reuse)).run(cfg.wait, gather)


def ready(cfg: LaunchConfig, slurm: SlurmConfig) -> None:
    """Called by a grid command before its own checks: the launcher can run here (slurm: SLURM's
    commands are on PATH), and the command's own torch threads are at its jobs' count (local,
    slurm), so that what it computes to plan them (the judge's cache key among it) is what its
    jobs compute."""
    if cfg.launcher == "slurm":
        check_slurm()
    if cfg.launcher != "inline":
        import torch
        torch.set_num_threads(threads_per_job(cfg, slurm, job_slots(cfg, gpu_count())))


def earlier_job(cell: Cell, queue: SlurmQueue, reuse: set):
    """The still-running job of an earlier command for this cell: waited on under reuse, else refused."""
    handle = attach(cell, queue)
    if handle is not None and cell.name not in reuse:
        raise ConfigError(
            f"cell {cell.name} is still running as {handle.ident}, started by an earlier command: a second job "
            f"would write into the same run folder. Wait for it (rerun with --reuse true to gather it when it "
            f"ends) or cancel it ({'scancel ' + handle.job_id if hasattr(handle, 'job_id') else 'kill ' + str(handle.pid)})")
    return handle


def run_inline(cells: list[Cell], reuse: set) -> dict:
    """Each cell in this process, in order; an exception propagates as it is (the first failure stops the command)."""
    results, queue = {}, SlurmQueue()
    for cell in cells:
        ok, result = stored_result(cell) if cell.name in reuse else (False, None)
        if ok:
            results[cell.name] = result
            continue
        if earlier_job(cell, queue, reuse) is not None:  # run elsewhere meanwhile: gather it
            results.update(Grid([cell], None, queue, reuse | {cell.name}).run(True, ""))
            continue
        from experiments.jobs.worker import run_cell  # (not at the top: python -m experiments.jobs.worker runs it)
        spec = cell.write_spec()
        write_job(cell, {"launcher": "inline", "host": socket.gethostname(), "pid": os.getpid(),
                         "started": time.time()})
        results[cell.name] = json.loads(json.dumps(run_cell(spec), default=str))  # as a job's result.json reads
    return results


class Grid:
    def __init__(self, cells: list[Cell], launcher, queue: SlurmQueue, reuse: set):
        self.cells, self.launcher, self.queue, self.reuse = cells, launcher, queue, reuse
        self.by_name = {c.name: c for c in cells}
        self.results, self.failures, self.handles, self.started = {}, {}, {}, []
        self.progress = Progress([c.name for c in cells])

    def run(self, wait: bool, gather: str) -> dict | None:
        """Start, watch and gather until every cell is done or failed (wait = false: until every
        cell is submitted) -> the results, or None when not waited for."""
        pending = self.sort_out()
        try:
            with terminate_as_interrupt():
                while pending or self.handles:
                    self.queue.refresh(self.handles.values())
                    self.collect()
                    pending = self.start(pending)
                    self.progress.show()
                    if not wait and not pending:
                        return self.submitted(gather)
                    if pending or self.handles:
                        time.sleep(POLL_SECONDS)
        except KeyboardInterrupt as stop:
            self.cancel()
            raise SystemExit(143 if isinstance(stop, Terminated) else 130) from None
        self.progress.show()
        if self.failures:
            lines = [f"  {name}: {why}" for name, why in self.failures.items()]
            raise JobsFailed(f"{len(self.failures)} of {len(self.cells)} cells failed:\n" + "\n".join(lines) +
                             "\nThe finished cells' results are kept: rerun with --reuse true to run only the failed "
                             "ones (an interrupted training resumes from its last.pt).", self.results, self.failures)
        return self.results

    def sort_out(self) -> list[Cell]:
        """Each cell reused (a stored result for its key, where reuse allows), waited on (its job from
        an earlier command still runs), or to start -> the cells to start."""
        pending = []
        for cell in self.cells:
            ok, result = stored_result(cell) if cell.name in self.reuse else (False, None)
            handle = None if ok else earlier_job(cell, self.queue, self.reuse)
            if ok:
                self.results[cell.name] = result
                self.progress.set(cell.name, "reused")
            elif handle is not None:
                self.handles[cell.name] = handle
                self.progress.set(cell.name, "running", f"{handle.ident}, started earlier")
            else:
                pending.append(cell)
        return pending

    def collect(self) -> None:
        """Gather the jobs that ended: a result, or a failure reported with its log's tail."""
        for name, handle in list(self.handles.items()):
            state = handle.state()
            if state != "ended":
                self.progress.set(name, state, handle.ident)
                continue
            del self.handles[name]
            if self.launcher is not None:
                self.launcher.finished(handle)
            cell = self.by_name[name]
            ok, result = stored_result(cell)
            for _ in range(RESULT_GRACE if isinstance(handle, SlurmHandle) and not ok else 0):
                time.sleep(1)  # a shared filesystem may show the result a little after the job has ended
                ok, result = stored_result(cell)
                if ok:
                    break
            if ok:
                self.results[name] = result
                self.progress.set(name, "done", handle.ident)
            else:
                self.fail(cell, handle.reason(), handle.log)
            clear_lock(cell)

    def fail(self, cell: Cell, why: str, log=None) -> None:
        self.failures[cell.name] = why
        self.progress.set(cell.name, "failed")
        text = [f"cell {cell.name} failed: {why}"]
        if log is not None:
            lines = tail(log, TAIL_LINES)
            text += [f"--- the last {TAIL_LINES} lines of {log} ---", lines or "(empty log)", "---"]
        self.progress.say("\n".join(text))
        for name, handle in list(self.handles.items()):  # queued behind it (slurm afterok): never to start
            if cell.name in self.by_name[name].after:
                handle.cancel()
                del self.handles[name]
                self.fail(self.by_name[name], f"not run: it reads {cell.name}, which failed")

    def start(self, pending: list[Cell]) -> list[Cell]:
        """Start what may start now; -> what still waits."""
        waiting = []
        for cell in pending:
            failed = [a for a in cell.after if a in self.failures]
            if failed:
                self.fail(cell, f"not run: it reads {failed[0]}, which failed")
                continue
            # local: once the cells it reads are done; slurm: once they are submitted (afterok)
            ready = all(a in self.results or (isinstance(self.launcher, SlurmLauncher) and a in self.handles)
                        for a in cell.after)
            if not ready or not self.launcher.capacity(len(self.handles)):
                waiting.append(cell)
                continue
            after_ids = [self.handles[a].job_id for a in cell.after if a in self.handles]
            handle = self.launcher.start(cell, after_ids)
            self.handles[cell.name] = handle
            self.started.append(handle)
            self.progress.set(cell.name, "queued" if isinstance(self.launcher, SlurmLauncher) else "running",
                              handle.ident)
        return waiting

    def cancel(self) -> None:
        running = [h for h in self.started if h.cell.name in self.handles]
        for handle in running:
            handle.cancel()
        for handle in running:
            clear_lock(handle.cell)
        others = [h for h in self.handles.values() if h not in self.started]
        self.progress.say(f"interrupted: cancelled {len(running)} job(s) this command started"
                          + (": " + ", ".join(f"{h.cell.name} ({h.ident})" for h in running) if running else "")
                          + (f"; left running {len(others)} started by an earlier command: "
                             + ", ".join(f"{h.cell.name} ({h.ident})" for h in others) if others else ""))

    def submitted(self, gather: str) -> None:
        ids = ", ".join(f"{name} ({h.ident})" for name, h in self.handles.items())
        print(f"submitted {len(self.handles)} job(s) without waiting: {ids}\n"
              f"see them with squeue; when they have finished (or to wait for them), gather the results with:\n"
              f"  {gather}")
        return None


class Terminated(KeyboardInterrupt):
    """SIGTERM to a command watching its jobs: handled as Ctrl-C is."""


@contextlib.contextmanager
def terminate_as_interrupt():
    """While the grid is watched, SIGTERM raises Terminated (main thread only: signal handlers can
    be set nowhere else); the handler before is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def clear_lock(cell: Cell) -> None:
    """A run lock left by this cell's job once that job has ended (the lock cannot tell that a holder
    on another host is gone; the scheduler can)."""
    if cell.run_dir is None:
        return
    lock, worker = cell.run_dir / ".lock", read_json(cell.folder / "worker.json")
    holder = read_json(lock) if lock.is_file() else None
    if holder and worker and (holder.get("host"), holder.get("pid")) == (worker.get("host"), worker.get("pid")):
        lock.unlink(missing_ok=True)
