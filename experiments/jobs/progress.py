"""The live table of a grid's cells: queued / running / done / failed / reused, with elapsed time.

On a terminal the table is redrawn in place (ANSI cursor movement, as tqdm does); elsewhere (a log
file, CI, a SLURM job's output) each change of a cell's state is one plain line instead.
"""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, names: list[str], stream=None):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.names, self.drawn, self.seen = names, 0, {}
        self.state = {n: ("queued", "", None) for n in names}  # name -> (state, job, since)
        self.width = max(len(n) for n in names) if names else 4

    def set(self, name: str, state: str, job: str = "") -> None:
        old = self.state[name]
        since = old[2] if old[0] == state else time.time()
        self.state[name] = (state, job or old[1], since)

    def say(self, text: str) -> None:
        """A message between redraws (a failure's log tail): printed below the table, which is then
        drawn afresh under it."""
        self.stream.write(text.rstrip("\n") + "\n")
        self.drawn = 0
        self.stream.flush()

    def lines(self) -> list[str]:
        counts = {}
        for state, _, _ in self.state.values():
            counts[state] = counts.get(state, 0) + 1
        out = [f"{'cell':<{self.width}}  {'state':<8}  {'elapsed':>8}  job"]
        for n in self.names:
            state, job, since = self.state[n]
            elapsed = clock(time.time() - since) if since and state in ("queued", "running") else ""
            out.append(f"{n:<{self.width}}  {state:<8}  {elapsed:>8}  {job}")
        out.append("  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return out

    def show(self) -> None:
        if self.tty:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the table's first line, clear below
            lines = self.lines()
            self.stream.write("\n".join(lines) + "\n")
            self.drawn = len(lines)
        else:
            for n in self.names:
                state, job, _ = self.state[n]
                if self.seen.get(n) != state:
                    self.seen[n] = state
                    self.stream.write(f"[{time.strftime('%H:%M:%S')}] {n}: {state}{f' ({job})' if job else ''}\n")
        self.stream.flush()
