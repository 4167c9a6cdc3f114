"""One writer per run directory: a lock file that says who holds it.

Two trainings started into the same run directory would interleave their checkpoints,
events and config.json. `RunLock(run_dir)` creates `run_dir/.lock` atomically (O_EXCL)
with the holder's PID, host and start time; a second run is refused with that holder and
what to do. A lock whose process is gone (killed with SIGKILL, a crashed machine) is
stale: on the same host it is detected (no such PID) and taken over with a note; from
another host (a shared filesystem) it cannot be checked, and the message says how to
remove it. The lock is released when the run ends, and at interpreter exit otherwise.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from pathlib import Path

from experiments.core.checkpoint import CheckpointError, pid_alive


class RunLock:
    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.path = Path(run_dir) / ".lock"
        self.enabled, self.held = enabled, False

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # half-written by a writer killed between open and write
            return {}

    def _stale(self, holder: dict) -> bool:
        """The holder is provably gone: this host, and its PID no longer runs (or it is this very
        process, left from an earlier run in it that raised)."""
        if not holder:  # empty or unreadable: a writer killed between creating and writing it (or one
            # that is writing it this very moment, hence the age)
            return time.time() - self.path.stat().st_mtime > 5
        if holder.get("host") != socket.gethostname() or not str(holder.get("pid", "")).isdigit():
            return False  # another machine's process: cannot be checked from here
        return int(holder["pid"]) == os.getpid() or not pid_alive(int(holder["pid"]))

    def acquire(self) -> "RunLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
                    raise CheckpointError(
                        f"run directory {self.path.parent} is in use by process {holder.get('pid')} on "
                        f"{holder.get('host')} (since {since}): two runs in one directory would overwrite each "
                        f"other's checkpoints. Wait for it to finish, or give another --run_name (or --out_dir). "
                        f"If that process is gone (e.g. a machine that crashed), delete {self.path}") from None
                print(f"note: {self.path} was left by process {holder.get('pid')}, which is gone; taking it over",
                      file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
            self.held = True
            atexit.register(self.release)
            return self
        raise CheckpointError(f"could not take the lock {self.path}; another run keeps creating it")

    def release(self) -> None:
        if self.held:
            self.held = False
            if self._holder().get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
