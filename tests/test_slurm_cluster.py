"""The one-node SLURM cluster of tests/slurm/cluster.sh answers and runs submitit jobs: the ground
the SLURM launcher's tests stand on. Skipped, with the reason, where no cluster answers (start one
with `bash tests/slurm/cluster.sh start`, as root; stop it with `... stop`)."""

import operator
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER = Path(__file__).parent / "slurm" / "cluster.sh"


def cluster_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0


@pytest.mark.skipif(not cluster_answers(), reason="no SLURM cluster answers: bash tests/slurm/cluster.sh start")
def test_submitit_array_runs_on_the_cluster(tmp_path):
    submitit = pytest.importorskip("submitit", reason="submitit is not installed")
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs")
    assert executor.cluster == "slurm"
    executor.update_parameters(timeout_min=2, cpus_per_task=1, mem_gb=1)
    # a function the job's interpreter can import by name (this test module is not on its path)
    jobs = executor.map_array(operator.mul, [1, 2, 3], [1, 2, 3])
    assert len({job.job_id for job in jobs}) == 3
    assert [job.result() for job in jobs] == [1, 4, 9]
    assert all((tmp_path / "jobs").glob(f"{job.job_id}_*_log.out") for job in jobs)
