"""The SLURM launcher on a real one-node cluster (tests/slurm/cluster.sh): a grid's results equal
inline's, a job killed with SIGKILL is reported (never waited on), Ctrl-C cancels the jobs, a job
at its time limit is requeued and resumes, a cell of two tasks trains as DDP. Skipped, with the
reason, where no cluster answers (start one with `bash tests/slurm/cluster.sh start`, as root);
under CI=true a missing cluster fails, as missing test data does."""

import json
import operator
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from experiments.studies import comparison
from experiments.core.checkpoint import load_checkpoint
from experiments.jobs import Cell, JobsFailed, LaunchConfig, SlurmConfig, launch
from experiments.jobs.cells import differences, job_record

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = pytest.mark.usefixtures("one_thread")


def cluster_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not cluster_answers():
        why = "no SLURM cluster answers: bash tests/slurm/cluster.sh start (as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; under CI=true the SLURM tests must run (.ci/run starts the cluster)")
        pytest.skip(why)


def slurm(**settings) -> tuple:
    return LaunchConfig(launcher="slurm"), SlurmConfig(**{"time_min": 5, "mem_gb": 1, **settings})


def queued(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def test_submitit_array_runs_on_the_cluster(tmp_path):
    import submitit
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs")
    assert executor.cluster == "slurm"
    # 5 minutes, not 2: submitit asks for its requeue signal 90 s before the limit and SLURM may send
    # it up to 60 s early, so under a 2-minute limit a job can be signalled before Python has
    # installed the handler, and it dies (seen: "task 0: User defined signal 2" at 0.3 s)
    executor.update_parameters(timeout_min=5, cpus_per_task=1, mem_gb=1)
    # a function the job's interpreter can import by name (this test module is not on its path)
    jobs = executor.map_array(operator.mul, [1, 2, 3], [1, 2, 3])
    # job.result() alone waits forever for a job that died without a result (this cluster keeps no
    # accounting, so submitit never learns its state): fail with the job's log instead
    deadline = time.time() + 240
    while not all(job.done() for job in jobs):
        if time.time() > deadline:
            logs = {job.job_id: job.stderr() for job in jobs if not job.done()}
            raise AssertionError(f"jobs without a result after 240 s: {logs}")
        time.sleep(1)
    assert [job.result() for job in jobs] == [1, 4, 9]


TINY = ["--dataset", "numbers", "--models", "bigram,mlp", "--max_steps", "30", "--eval_interval", "15",
        "--eval_samples", "8", "--num_samples", "40", "--temperatures", "0.8,1.0", "--scorer.steps", "10",
        "--scorer.val_interval", "5", "--scorer.n_layer", "1", "--scorer.n_embd", "16", "--models.mlp.num_samples", "2"]


def compare(root: Path, launch_sections, *extra) -> dict:
    file_values, pairs = comparison.cfglib.read_cli(TINY + ["--out_dir", str(root), "--experiment", "grid", *extra])
    sec, entries, published = comparison.parse_sections(file_values, pairs)
    return comparison.run(sec["compare"], sec["scorer"], entries, published, command="test", launch=launch_sections)


def test_a_comparison_on_slurm_gathers_what_inline_computes(tmp_path, capsys):
    inline = compare(tmp_path / "inline", (LaunchConfig(), SlurmConfig()))
    on_slurm = compare(tmp_path / "slurm", slurm())
    assert differences(inline, on_slurm, roots=(str(tmp_path / "inline"), str(tmp_path / "slurm"))) == []
    out = capsys.readouterr().out
    for name in ("judge", "bigram", "mlp"):  # each cell was a SLURM job, its id recorded in its folder
        record = job_record(Cell(name, tmp_path / "slurm" / "grid" / "jobs" / name, "x:y", {}))
        assert record["launcher"] == "slurm" and f"{name}: queued (SLURM job {record['job_id']})" in out


def test_a_slurm_job_killed_with_sigkill_is_reported_not_waited_on(tmp_path, capsys, wait_for):
    victim = Cell("victim", tmp_path / "jobs" / "victim", "tests.job_targets:pid_then_sleep",
                  {"path": str(tmp_path / "pid"), "seconds": 300})
    killer = threading.Thread(target=lambda: os.kill(int(wait_for(tmp_path / "pid", 120)), signal.SIGKILL))
    killer.start()
    t0 = time.time()
    with pytest.raises(JobsFailed) as failed:
        launch([victim], *slurm())
    killer.join()
    assert time.time() - t0 < 120
    why = failed.value.failures["victim"]
    assert "SLURM state FAILED" in why and "SIGKILL" in why, why
    assert "the last 20 lines of" in capsys.readouterr().out


def test_ctrl_c_cancels_every_slurm_job_the_command_started(tmp_path, wait_for, ctrl_c_child):
    script = (
        "from pathlib import Path; from experiments.jobs import Cell, LaunchConfig, SlurmConfig, launch\n"
        f"root = Path({str(tmp_path)!r})\n"
        "cells = [Cell(n, root / 'jobs' / n, 'tests.job_targets:pid_then_sleep', "
        "{'path': str(root / (n + '.pid')), 'seconds': 300}) for n in ('one', 'two')]\n"
        "launch(cells, LaunchConfig(launcher='slurm'), SlurmConfig(time_min=5, mem_gb=1))\n")
    parent = ctrl_c_child(script)
    for n in ("one", "two"):
        wait_for(tmp_path / f"{n}.pid", 120)
    ids = [json.loads((tmp_path / "jobs" / n / "job.json").read_text())["job_id"] for n in ("one", "two")]
    assert all(queued(i) == "RUNNING" for i in ids)
    parent.send_signal(signal.SIGINT)
    out, _ = parent.communicate(timeout=60)
    assert parent.returncode == 130 and "interrupted: cancelled 2 job(s) this command started" in out, out
    deadline = time.time() + 30
    while time.time() < deadline and any(queued(i) for i in ids):
        time.sleep(0.5)
    assert not any(queued(i) for i in ids)


def release_when_requeued(job_id: str, stop: threading.Event) -> None:
    """SLURM holds a requeued job for two minutes before it may start again; the test lets it start
    at once (scontrol update ... StartTime=now), as a cluster with free nodes soon would."""
    while not stop.is_set():
        info = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
        if "JobState=PENDING" in info and "Restarts=0" not in info:
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
        time.sleep(1)


def test_a_job_at_its_time_limit_is_requeued_and_resumes(tmp_path, wait_for):
    state = tmp_path / "count.json"
    kwargs = {"path": str(state), "n": 60, "step_seconds": 1.0}
    cell = Cell("long", tmp_path / "jobs" / "long", "tests.job_targets:count", kwargs,
                resume_kwargs={**kwargs, "resume": True})
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: release_when_requeued(
        json.loads(wait_for(cell.folder / "job.json", 120))["job_id"], stop))
    watcher.start()
    try:  # 60 s of work under a 1-minute limit, told to requeue 20 s before it
        result = launch([cell], *slurm(time_min=1, signal_delay_s=20))["long"]
    finally:
        stop.set()
        watcher.join()
    assert result["total"] == sum(range(60)) and result["attempts"] >= 2  # resumed, not restarted


def test_a_cell_of_two_tasks_trains_as_ddp(tmp_path):
    compare(tmp_path, slurm(tasks_per_job=2), "--models", "gpt2", "--models.gpt2.n_layer", "1",
            "--models.gpt2.n_embd", "16", "--models.gpt2.n_head", "2", "--lm_score", "false",
            "--reverse_lm_score", "false")
    assert load_checkpoint(tmp_path / "grid" / "gpt2" / "last.pt")["environment"]["world"] == 2


def test_submitted_without_waiting_then_gathered_by_the_same_command(tmp_path, capsys):
    def cells():
        a = Cell("a", tmp_path / "jobs" / "a", "tests.job_targets:echo", {"value": 1, "seconds": 3})
        b = Cell("b", tmp_path / "jobs" / "b", "tests.job_targets:read_and_add", {"path": str(a.result_path), "add": 1},
                 after=("a",))
        return [a, b]
    no_wait = (LaunchConfig(launcher="slurm", wait=False), SlurmConfig(time_min=5, mem_gb=1))
    assert launch(cells(), *no_wait, gather="the gather command") is None
    out = capsys.readouterr().out
    assert "submitted 2 job(s) without waiting" in out and "the gather command" in out
    first_ids = [json.loads((tmp_path / "jobs" / n / "job.json").read_text())["job_id"] for n in "ab"]
    # gathering: the jobs still queued or running are waited on, never submitted again
    assert launch(cells(), *slurm(), reuse={"a", "b"}) == {"a": 1, "b": 2}
    assert [json.loads((tmp_path / "jobs" / n / "job.json").read_text())["job_id"] for n in "ab"] == first_ids
