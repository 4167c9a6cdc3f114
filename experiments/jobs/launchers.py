"""Where a cell's job runs: this process (inline), a process of its own (local), a SLURM job (slurm).

Each launcher starts jobs and gives a handle per job, which says whether the job is queued, running
or has ended, why it ended (when it left no result), where its log is, and cancels it. A handle can
also be re-made from a job record (job.json) that an earlier command left, so that a job still
queued or running is waited on, never started a second time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from experiments.core.checkpoint import pid_alive
from experiments.jobs.cells import Cell, job_record, read_json, write_job
from experiments.jobs.config import SlurmConfig

ROOT = Path(__file__).resolve().parents[2]  # the project: on the job's import path wherever it starts


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def exit_reason(returncode: int) -> str:
    """What a job's exit status says, in words."""
    if returncode < 0:
        name = signal_name(-returncode)
        why = {"SIGKILL": " (kill -9, or the out-of-memory killer)", "SIGTERM": " (cancelled)"}.get(name, "")
        return f"killed by {name}{why}"
    if returncode == 2:
        return "exit status 2 (a setting or input it refused: the message is at the end of its log)"
    return f"exit status {returncode}"


# ---------------------------------------------------------------------------------------------
# local: one process per job


class LocalHandle:
    """A worker process on this machine: a child of this command (proc), or a process an earlier
    command started (pid from its job record)."""

    def __init__(self, cell: Cell, pid: int, proc: subprocess.Popen | None = None, slot: int | None = None):
        self.cell, self.pid, self.proc, self.slot = cell, pid, proc, slot
        self.ident, self.log = f"pid {pid}", cell.log_path

    def _is_worker(self) -> bool:
        """The pid still runs this cell's worker (not a later process that reuses the number)."""
        if not pid_alive(self.pid):
            return False
        try:
            return str(self.cell.spec_path) in Path(f"/proc/{self.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:  # no /proc (macOS): trust the pid
            return True

    def state(self) -> str:
        if self.proc is not None:
            return "running" if self.proc.poll() is None else "ended"
        return "running" if self._is_worker() else "ended"

    def reason(self) -> str:
        if self.proc is not None and self.proc.returncode is not None:
            return exit_reason(self.proc.returncode)
        return "it ended while no command was watching it (no result: killed, or the machine restarted)"

    def cancel(self) -> None:
        if self.state() != "running":
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)  # its own session: the worker and anything it started
        except ProcessLookupError:
            return
        deadline = time.time() + 10
        while time.time() < deadline and self.state() == "running":
            time.sleep(0.1)
        if self.state() == "running":
            os.killpg(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


class LocalLauncher:
    name = "local"

    def __init__(self, threads: int, gpus: int, slots: int):
        self.threads, self.gpus, self.slots = threads, gpus, slots
        self.free = list(range(slots))

    def capacity(self, active: int) -> bool:
        return active < self.slots

    def start(self, cell: Cell, after_ids=()) -> LocalHandle:
        """after_ids: unused (a local job starts once the cells it reads are done)."""
        spec = cell.write_spec(self.threads)
        slot = self.free.pop(0)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads),
                   RAYON_NUM_THREADS=str(self.threads),  # the BPE's thread pool: its results equal at any count
                   PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        if self.gpus and cell.gpus:  # one GPU per job, round robin over the slots
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        with open(cell.log_path, "w") as log:
            # a new interpreter (exec), never a fork of this one; its own session, so that Ctrl-C here
            # reaches this command only, which then cancels the job itself
            proc = subprocess.Popen([sys.executable, "-m", "experiments.jobs.worker", str(spec)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        write_job(cell, {"launcher": "local", "host": socket.gethostname(), "pid": proc.pid, "started": time.time(),
                         "gpu": env.get("CUDA_VISIBLE_DEVICES")})
        return LocalHandle(cell, proc.pid, proc, slot)

    def finished(self, handle: LocalHandle) -> None:
        if handle.slot is not None:
            self.free.append(handle.slot)
            self.free.sort()



# ---------------------------------------------------------------------------------------------
# slurm: one SLURM job per cell, through submitit


def squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """{job id: SLURM state} of those still in the queue (pending, running, requeued, completing);
    None when squeue cannot be asked (the caller then keeps its previous view)."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def scontrol_reason(job_id: str) -> str:
    """Why a job that left the queue ended, from scontrol (kept for MinJobAge after the end)."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
    if not fields:
        return ""
    parts = [f"SLURM state {fields.get('JobState', '?')}"]
    if fields.get("Reason") not in (None, "None"):
        parts.append(f"reason {fields['Reason']}")
    code, _, sig = fields.get("ExitCode", "0:0").partition(":")
    if sig not in ("", "0"):
        parts.append(f"killed by {signal_name(int(sig))}")
    elif code.isdigit() and int(code) > 128:  # the shell's 128 + signal of the task
        parts.append(f"exit status {code}: killed by {signal_name(int(code) - 128)}"
                     + (" (kill -9, or the out-of-memory killer)" if int(code) == 137 else ""))
    elif code not in ("", "0"):
        parts.append(f"exit status {code}")
    return ", ".join(parts)


class SlurmQueue:
    """The queue as squeue last showed it: one squeue call per poll for every job of the grid."""

    def __init__(self):
        self.states: dict[str, str] = {}

    def refresh(self, handles) -> None:
        ids = [h.job_id for h in handles if isinstance(h, SlurmHandle)]
        states = squeue_states(ids)
        if states is not None:
            self.states = states


class SlurmHandle:
    def __init__(self, cell: Cell, job_id: str, queue: SlurmQueue, job=None):
        self.cell, self.job_id, self.job, self.queue = cell, job_id, job, queue
        self.ident, self.missing = f"SLURM job {job_id}", 0

    @property
    def log(self) -> Path:
        return self.cell.folder / f"{self.job_id}_0_log.out"

    def state(self) -> str:
        slurm_state = self.queue.states.get(self.job_id)
        if slurm_state is None:
            # gone from squeue: ended. (Without accounting submitit would report UNKNOWN and wait for a
            # result file forever; a job killed by kill -9, the OOM killer or its time limit leaves none)
            self.missing += 1
            return "ended" if self.missing >= 2 else "running"
        self.missing = 0
        return "queued" if slurm_state in ("PENDING", "REQUEUED", "CONFIGURING", "REQUEUE_HOLD") else "running"

    def reason(self) -> str:
        why = scontrol_reason(self.job_id)
        error = read_json(self.cell.folder / "error.json")
        if error:
            why = f"{why}; {error['type']}: {error['message'].splitlines()[0] if error['message'] else ''}"
        return why or "gone from the queue without a result (scontrol no longer knows it)"

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel(check=False)
        else:
            subprocess.run(["scancel", self.job_id], capture_output=True)


def check_slurm() -> None:
    """SLURM's commands answer here (a login node of the cluster), or a message that says what to use."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        from experiments.core.config import ConfigError
        raise ConfigError("launcher slurm needs SLURM's sbatch and squeue on this machine's PATH (a login node "
                          "of the cluster); use --launcher local on a machine without SLURM")


class SlurmLauncher:
    name = "slurm"

    def __init__(self, slurm: SlurmConfig, threads: int, queue: SlurmQueue):
        check_slurm()
        self.slurm, self.threads, self.queue = slurm, threads, queue

    def capacity(self, active: int) -> bool:
        return True  # the scheduler queues them

    def executor(self, cell: Cell, after: list[str]):
        import submitit
        executor = submitit.AutoExecutor(folder=cell.folder, cluster="slurm", slurm_max_num_timeout=100)
        s = self.slurm
        extra = s.extra_parameters()
        if after:  # starts only once the cells it reads have succeeded
            extra["dependency"] = "afterok:" + ":".join(after)
        params = dict(name=cell.name, timeout_min=s.time_min, cpus_per_task=s.cpus_per_job, mem_gb=s.mem_gb,
                      nodes=1, tasks_per_node=cell.tasks, stderr_to_stdout=True, slurm_signal_delay_s=s.signal_delay(),
                      slurm_additional_parameters=extra,
                      slurm_setup=[f"export PYTHONPATH={ROOT}:${{PYTHONPATH:-}}",
                                   f"export OMP_NUM_THREADS={self.threads} RAYON_NUM_THREADS={self.threads}"])
        if s.gpus_per_job and cell.gpus:
            params["gpus_per_node"] = s.gpus_per_job
        if s.partition:
            params["slurm_partition"] = s.partition
        executor.update_parameters(**params)
        return executor

    def start(self, cell: Cell, after_ids: list[str] = ()) -> SlurmHandle:
        from experiments.jobs.worker import SlurmCell
        spec = cell.write_spec(self.threads)
        job = self.executor(cell, list(after_ids)).submit(SlurmCell(), str(spec))
        write_job(cell, {"launcher": "slurm", "job_id": str(job.job_id), "submitted": time.time()})
        self.queue.states[str(job.job_id)] = "PENDING"
        return SlurmHandle(cell, str(job.job_id), self.queue, job)

    def finished(self, handle) -> None:
        pass


def attach(cell: Cell, queue: SlurmQueue):
    """A handle on the job an earlier command started for this cell, if it is still queued or running
    (whichever launcher started it); else None."""
    record = job_record(cell) or {}
    if record.get("launcher") == "local" and record.get("host") == socket.gethostname():
        handle = LocalHandle(cell, int(record["pid"]))
        return handle if handle.state() == "running" else None
    if record.get("launcher") == "slurm" and shutil.which("squeue"):
        states = squeue_states([str(record["job_id"])])
        if states:
            queue.states.update(states)
            return SlurmHandle(cell, str(record["job_id"]), queue)
    return None

