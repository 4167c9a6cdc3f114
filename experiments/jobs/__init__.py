"""Grids as jobs: a grid command (compare, literature, frontier, ladder) expands into cells, each a
job that is a function of its settings alone and writes only its own run folder; a launcher runs
them (inline in this process, local as separate processes, slurm as SLURM jobs through submitit);
the command gathers their results and writes one report, the same under every launcher.

    cells.py      Cell: a job's function, settings, folder (jobs/<cell>/), stored result
    config.py     [launch] and [slurm]: the settings every grid command has
    grid.py       launch(): start, watch, gather, report failures, cancel on Ctrl-C or SIGTERM
    launchers.py  the local and slurm launchers and their job handles
    progress.py   the live table of cells
    worker.py     what a job runs (python -m experiments.jobs.worker <spec.json>)
"""

from experiments.jobs.cells import Cell, JobsFailed  # noqa: F401
from experiments.jobs.config import LaunchConfig, SlurmConfig, sections  # noqa: F401
from experiments.jobs.grid import launch, ready  # noqa: F401
