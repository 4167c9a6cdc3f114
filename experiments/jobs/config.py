"""The settings of a grid command's launcher: [launch] (which launcher, how many jobs at once) and
[slurm] (what each SLURM job asks for). Every grid command (compare, literature, frontier, ladder)
has both sections, so `--launcher local --jobs 4` or `--slurm.partition gpu` work on each, and a
config file may set them as `launcher = "slurm"` and a [slurm] table."""

from __future__ import annotations

import os
from dataclasses import dataclass

LAUNCHERS = ("inline", "local", "slurm")


@dataclass
class LaunchConfig:
    launcher: str = "inline"     # inline: the cells one after another in this process; local: `jobs` cells at once,
                                 # each its own process; slurm: each cell a SLURM job (submitit)
    jobs: int = 0                # local: cells at once (0 = one per GPU on a machine with GPUs, else one per core)
    threads_per_job: int = 0     # torch threads of each job (0 = cores / jobs under local, cpus_per_job under slurm)
    wait: bool = True            # slurm: false = submit, print the command that gathers the results, and return

    def __post_init__(self):
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        if self.jobs < 0 or self.threads_per_job < 0:
            raise ValueError(f"jobs and threads_per_job must be >= 0 (0 = automatic), got {self.jobs}, "
                             f"{self.threads_per_job}")
        if not self.wait and self.launcher != "slurm":
            raise ValueError("wait = false needs launcher = slurm: local jobs are children of this command")


@dataclass
class SlurmConfig:
    partition: str = ""          # "" = the cluster's default partition
    time_min: int = 60           # each job's time limit; a job that reaches it is requeued and resumes
    gpus_per_job: int = 0        # GPUs of each job (one per task when tasks_per_job > 1)
    cpus_per_job: int = 1        # CPUs of each task (its torch threads unless threads_per_job is set)
    mem_gb: float = 4.0          # memory of each job
    tasks_per_job: int = 1       # > 1: one training cell runs as that many DDP processes (one per GPU)
    extra: str = ""              # more sbatch options, key=value,... (e.g. account=abc,qos=high)
    signal_delay_s: int = 0      # seconds before the time limit at which a job is told to requeue itself
                                 # (0 = a quarter of time_min, at most 90 s: a job needs the rest to work)
                                 # SLURM may send it up to 60 s early: under a limit of a minute or two a
                                 # job can be told before it starts (it then fails, reported as SIGUSR2)

    def __post_init__(self):
        if self.time_min < 1 or self.cpus_per_job < 1 or self.tasks_per_job < 1 or self.gpus_per_job < 0:
            raise ValueError("slurm.time_min, cpus_per_job and tasks_per_job must be >= 1, gpus_per_job >= 0")
        if self.mem_gb <= 0 or self.signal_delay_s < 0:
            raise ValueError("slurm.mem_gb must be > 0 and slurm.signal_delay_s >= 0")
        if self.signal_delay_s and self.signal_delay_s >= self.time_min * 60:
            raise ValueError(f"slurm.signal_delay_s {self.signal_delay_s} must be below the time limit "
                             f"({self.time_min * 60} s), or a job is told to requeue before it starts working")
        self.extra_parameters()

    def extra_parameters(self) -> dict[str, str]:
        out = {}
        for item in [x.strip() for x in self.extra.split(",") if x.strip()]:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"slurm.extra must be key=value,... (sbatch options), got {item!r} in {self.extra!r}")
            out[key.strip()] = value.strip()
        return out

    def signal_delay(self) -> int:
        return self.signal_delay_s or min(90, self.time_min * 60 // 4)


SECTIONS = {"launch": LaunchConfig, "slurm": SlurmConfig}


def sections() -> dict:
    """Fresh [launch] and [slurm] sections, for a command's config resolution."""
    return {name: cls() for name, cls in SECTIONS.items()}


def job_slots(cfg: LaunchConfig, gpus: int) -> int:
    """How many cells run at once under local."""
    return cfg.jobs or gpus or os.cpu_count() or 1


def threads_per_job(cfg: LaunchConfig, slurm: SlurmConfig, slots: int) -> int:
    """Torch threads of each job: given, or the cores shared out (local), or the job's CPUs (slurm)."""
    if cfg.threads_per_job:
        return cfg.threads_per_job
    if cfg.launcher == "slurm":
        return slurm.cpus_per_job
    return max(1, (os.cpu_count() or 1) // slots)
