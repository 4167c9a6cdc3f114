"""The job layer (experiments/jobs): cells run in order under inline and local, stored results are
reused only for the same key, a failure is reported with its log's tail (a job killed with SIGKILL
included, never waited on), a job still running is never started twice, Ctrl-C cancels the jobs
the command started; the comparison's cells have stable names and digests, its resume decisions
follow the run folder, and a comparison under local gathers exactly what inline computes."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from experiments.studies import comparison
from experiments.core.checkpoint import CheckpointError, pid_alive
from experiments.core.config import ConfigError
from experiments.jobs import Cell, JobsFailed, LaunchConfig, SlurmConfig, launch
from experiments.jobs.cells import differences, write_job

REPO = Path(__file__).resolve().parent.parent
INLINE = (LaunchConfig(), SlurmConfig())
LOCAL = (LaunchConfig(launcher="local", jobs=2), SlurmConfig())


def cell(root: Path, name: str, target: str, after=(), **kwargs) -> Cell:
    return Cell(name, root / "jobs" / name, f"tests.job_targets:{target}", kwargs, after=tuple(after))


@pytest.mark.parametrize("launcher", [INLINE, LOCAL], ids=["inline", "local"])
def test_cells_start_after_the_cells_they_read(tmp_path, launcher):
    a = cell(tmp_path, "a", "echo", value=41, seconds=0.5)
    b = Cell("b", tmp_path / "jobs" / "b", "tests.job_targets:read_and_add", {"path": str(a.result_path), "add": 1},
             after=("a",))
    c = cell(tmp_path, "c", "echo", value={"x": [1.5, None]})
    assert launch([a, b, c], *launcher) == {"a": 41, "b": 42, "c": {"x": [1.5, None]}}
    assert json.loads(a.result_path.read_text())["digest"] == a.digest()


def test_a_cell_listed_before_the_cell_it_reads_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not earlier cells"):
        launch([cell(tmp_path, "b", "echo", after=["a"], value=1), cell(tmp_path, "a", "echo", value=2)], *INLINE)


def test_a_stored_result_is_reused_only_for_the_same_key(tmp_path):
    first = cell(tmp_path, "a", "echo", value=1)
    assert launch([first], *LOCAL) == {"a": 1}
    log_mtime = first.log_path.stat().st_mtime_ns
    assert launch([cell(tmp_path, "a", "echo", value=1)], *LOCAL, reuse={"a"}) == {"a": 1}
    assert first.log_path.stat().st_mtime_ns == log_mtime  # not run again
    assert launch([cell(tmp_path, "a", "echo", value=2)], *LOCAL, reuse={"a"}) == {"a": 2}  # another key: run
    assert launch([cell(tmp_path, "a", "echo", value=2)], *LOCAL) == {"a": 2}  # not reusable: run again
    assert first.log_path.stat().st_mtime_ns != log_mtime


def test_a_failure_is_reported_with_its_log_and_its_dependents_do_not_run(tmp_path, capsys):
    bad = cell(tmp_path, "bad", "fail", message="the reason it failed")
    after_bad = Cell("after-bad", tmp_path / "jobs" / "after-bad", "tests.job_targets:echo", {"value": 0},
                     after=("bad",))
    good = cell(tmp_path, "good", "echo", value=3)
    with pytest.raises(JobsFailed) as failed:
        launch([bad, after_bad, good], *LOCAL)
    assert failed.value.results == {"good": 3}
    assert failed.value.failures["bad"] == "exit status 1"
    assert "bad, which failed" in failed.value.failures["after-bad"]
    assert "--reuse true" in str(failed.value)
    out = capsys.readouterr().out
    assert "cell bad failed: exit status 1" in out and f"the last 20 lines of {bad.log_path}" in out
    assert "about to fail" in out and "RuntimeError: the reason it failed" in out
    assert json.loads((bad.folder / "error.json").read_text())["message"] == "the reason it failed"
    assert not after_bad.result_path.exists()


def test_a_job_killed_with_sigkill_is_a_failure_not_a_hang(tmp_path, wait_for):
    victim = cell(tmp_path, "victim", "pid_then_sleep", path=str(tmp_path / "pid"), seconds=120)
    killer = threading.Thread(target=lambda: os.kill(int(wait_for(tmp_path / "pid", 60)), signal.SIGKILL))
    killer.start()
    t0 = time.time()
    with pytest.raises(JobsFailed) as failed:
        launch([victim], *LOCAL)
    killer.join()
    assert time.time() - t0 < 60
    assert "killed by SIGKILL" in failed.value.failures["victim"]


def start_worker(c: Cell) -> subprocess.Popen:
    """A cell's job started as an earlier command would have: its spec, its process, its record."""
    spec = c.write_spec(1)
    proc = subprocess.Popen([sys.executable, "-m", "experiments.jobs.worker", str(spec)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    write_job(c, {"launcher": "local", "host": socket.gethostname(), "pid": proc.pid})
    return proc


def test_a_job_still_running_is_never_started_twice(tmp_path, wait_for):
    c = cell(tmp_path, "busy", "pid_then_sleep", path=str(tmp_path / "pid"), seconds=4)
    proc = start_worker(c)
    wait_for(tmp_path / "pid", 60)
    with pytest.raises(ConfigError, match=f"still running as pid {proc.pid}"):
        launch([c], *LOCAL)
    with pytest.raises(ConfigError, match="still running"):
        launch([c], *INLINE)
    assert launch([c], *LOCAL, reuse={"busy"}) == {"busy": "slept"}  # waited on, not started again
    assert proc.wait(timeout=10) == 0
    assert (tmp_path / "pid").read_text() == str(proc.pid)  # the only process that ran it


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_cancels_every_job_the_command_started(tmp_path, wait_for, ctrl_c_child, stop, code):
    script = (
        "import sys; from pathlib import Path; from experiments.jobs import Cell, LaunchConfig, SlurmConfig, launch\n"
        f"root = Path({str(tmp_path)!r})\n"
        "cells = [Cell(n, root / 'jobs' / n, 'tests.job_targets:pid_then_sleep', "
        "{'path': str(root / (n + '.pid')), 'seconds': 300}) for n in ('one', 'two')]\n"
        "launch(cells, LaunchConfig(launcher='local', jobs=2), SlurmConfig())\n")
    parent = ctrl_c_child(script)
    pids = [int(wait_for(tmp_path / f"{n}.pid", 60)) for n in ("one", "two")]
    parent.send_signal(stop)
    out, _ = parent.communicate(timeout=60)
    assert parent.returncode == code, out
    assert "interrupted: cancelled 2 job(s) this command started" in out
    time.sleep(0.5)
    assert not any(pid_alive(p) for p in pids)


# ---- the comparison's cells

TINY = ["--dataset", "numbers", "--models", "bigram,mlp", "--max_steps", "30", "--eval_interval", "15",
        "--eval_samples", "8", "--num_samples", "40", "--temperatures", "0.8,1.0", "--scorer.steps", "10",
        "--scorer.val_interval", "5", "--scorer.n_layer", "1", "--scorer.n_embd", "16", "--mauve", "false",
        "--models.mlp.num_samples", "2"]


def sections(tmp_path, *extra):
    file_values, pairs = comparison.cfglib.read_cli(TINY + ["--out_dir", str(tmp_path / "runs"), *extra])
    sec, entries, published = comparison.parse_sections(file_values, pairs)
    return sec, entries, published


def study(tmp_path, *extra):
    sec, entries, published = sections(tmp_path, *extra)
    return comparison.prepare(sec["compare"], sec["scorer"], entries, published, command="test")


def test_cell_names_folders_and_digests_are_stable(tmp_path):
    s = study(tmp_path, "--experiment", "names")
    judge = comparison.judge_cell(s.cfg, s.scorer_cfg, s.corpus, s.runs_dir / "jobs" / "judge")
    cells = comparison.entry_cells(s, judge, prefix="seed1/")
    s.lock.release()
    assert [c.name for c in cells] == ["seed1/bigram", "seed1/mlp"]
    assert [c.folder for c in cells] == [s.runs_dir / "jobs" / "bigram", s.runs_dir / "jobs" / "mlp"]
    # the scoring cells do not wait for the judge's: the first to need the scorer fits it under the cache's lock
    assert all(c.after == () and c.run_dir == s.runs_dir / c.name.split("/")[1] for c in cells)
    # the digest follows what the result depends on, not how the run folder is treated or the report shaped
    again = study(tmp_path, "--experiment", "names", "--reuse", "true", "--retrain_changed", "true", "--n_show", "2")
    assert [c.digest() for c in comparison.entry_cells(again, judge, prefix="seed1/")] == [c.digest() for c in cells]
    again.lock.release()
    other = study(tmp_path, "--experiment", "names", "--num_samples", "30")
    assert comparison.entry_cells(other, judge)[0].digest() != cells[0].digest()
    assert comparison.judge_cell(other.cfg, other.scorer_cfg, other.corpus, judge.folder).digest() != judge.digest()
    other.lock.release()


def test_resume_decisions_follow_the_run_folder(tmp_path):
    sec, entries, _ = sections(tmp_path, "--experiment", "modes")
    cfg = sec["compare"]
    family = comparison.FAMILIES["lm"]
    run_dir = tmp_path / "runs" / "modes" / "mlp"
    reuse = comparison.dataclasses.replace(cfg, reuse=True)
    assert comparison.run_mode(reuse, family, run_dir) == "fresh"  # missing
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "last.pt").write_bytes(b"")
    assert comparison.run_mode(reuse, family, run_dir) == "resume"  # interrupted
    (run_dir / "best.pt").write_bytes(b"")
    (run_dir / "metrics.json").write_text("{}")
    assert comparison.run_mode(reuse, family, run_dir) == "reuse"  # finished
    assert comparison.run_mode(cfg, family, run_dir) == "fresh"  # without --reuse true: retrained


def test_a_changed_setting_is_refused_unless_retrain_changed(tmp_path):
    sec, entries, published = sections(tmp_path, "--experiment", "changed", "--models", "bigram,mlp")
    comparison.run(sec["compare"], sec["scorer"], entries, published, command="test")
    sec, entries, _ = sections(tmp_path, "--experiment", "changed", "--models", "bigram,mlp", "--reuse", "true",
                               "--models.mlp.lr", "0.01")
    runs_dir = tmp_path / "runs" / "changed"
    vocab = {n: comparison.build_tokenizer(sec["compare"].load()).itos for n, _, _ in entries}
    with pytest.raises(CheckpointError, match="--retrain_changed true"):
        comparison.preflight(sec["compare"], entries, runs_dir, vocab)
    cfg = comparison.dataclasses.replace(sec["compare"], retrain_changed=True)
    assert comparison.preflight(cfg, entries, runs_dir, vocab) == {"bigram": "reuse", "mlp": "fresh"}


def test_a_comparison_under_local_gathers_what_inline_computes(tmp_path, one_thread):
    runs = {}
    for name, launcher in (("inline", "inline"), ("local", "local")):
        sec, entries, published = sections(tmp_path / name, "--experiment", "same")
        runs[name] = comparison.run(sec["compare"], sec["scorer"], entries, published, command="test",
                                    launch=(LaunchConfig(launcher=launcher, jobs=2, threads_per_job=1), SlurmConfig()))
    assert differences(runs["inline"], runs["local"], roots=(str(tmp_path / "inline"), str(tmp_path / "local"))) == []
    assert (tmp_path / "local" / "runs" / "same" / "jobs" / "mlp" / "log.txt").is_file()


class Terminal:
    """A stream that says it is a terminal, collecting what is written."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_the_progress_table_redraws_in_place_on_a_terminal_and_prints_lines_elsewhere():
    from experiments.jobs.progress import Progress
    for tty in (True, False):
        stream = Terminal(tty)
        table = Progress(["seed1/gpt2", "seed1/lstm"], stream)
        table.set("seed1/gpt2", "running", "pid 1")
        table.show()
        table.set("seed1/gpt2", "done", "pid 1")
        table.set("seed1/lstm", "failed")
        table.show()
        if tty:  # the second drawing moves up over the first (4 lines: header, 2 cells, counts) and clears it
            assert stream.text.count("\x1b[4F\x1b[J") == 1 and "done 1  failed 1" in stream.text
        else:
            lines = stream.text.splitlines()
            assert "\x1b" not in stream.text and len(lines) == 4
            assert lines[0].endswith("seed1/gpt2: running (pid 1)") and lines[3].endswith("seed1/lstm: failed")


def test_the_slurm_launcher_without_slurm_says_what_to_use(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no squeue
    with pytest.raises(ConfigError, match="--launcher local"):
        launch([cell(tmp_path, "a", "echo", value=1)], LaunchConfig(launcher="slurm"), SlurmConfig())


def test_launch_settings_are_checked():
    with pytest.raises(ValueError, match="launcher must be one of"):
        LaunchConfig(launcher="pbs")
    with pytest.raises(ValueError, match="needs launcher = slurm"):
        LaunchConfig(launcher="local", wait=False)
    with pytest.raises(ValueError, match="key=value"):
        SlurmConfig(extra="account")
    with pytest.raises(ValueError, match="below the time limit"):
        SlurmConfig(time_min=1, signal_delay_s=60)
    assert SlurmConfig(extra="account=abc, qos=high").extra_parameters() == {"account": "abc", "qos": "high"}
    assert SlurmConfig(time_min=1).signal_delay() == 15 and SlurmConfig(time_min=240).signal_delay() == 90


def test_a_report_whose_cells_failed_is_marked_incomplete(tmp_path):
    report = tmp_path / "report.md"
    comparison.mark_failed(report, {"seed2/lstm": "killed by SIGKILL"}, "python -m experiments.literature --reuse true")
    text = report.read_text()
    assert text.startswith(comparison.INCOMPLETE) and "seed2/lstm: killed by SIGKILL" in text
    assert "`python -m experiments.literature --reuse true`" in text
    report.write_text("# the old report\n")
    comparison.mark_failed(report, {"a": "exit status 1"}, "gather")
    comparison.mark_failed(report, {"b": "exit status 1"}, "gather")  # a second failure replaces the first note
    text = report.read_text()
    assert text.count(comparison.INCOMPLETE) == 1 and "b: exit status 1" in text and "a: exit" not in text
    assert text.endswith("# the old report\n") and "from an earlier comparison" in text


def test_the_launcher_settings_come_from_the_config_file_too(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text('launcher = "local"\njobs = 3\n[slurm]\npartition = "gpu"\nextra = "account=abc"\n'
                      '[compare]\ndataset = "numbers"\nmodels = "bigram"\n')
    file_values, pairs = comparison.cfglib.read_cli(["--config", str(config), "--slurm.time_min", "30"])
    sec, _, _ = comparison.parse_sections(file_values, pairs)
    assert (sec["launch"].launcher, sec["launch"].jobs) == ("local", 3)
    assert (sec["slurm"].partition, sec["slurm"].time_min, sec["slurm"].extra_parameters()) == ("gpu", 30, {"account": "abc"})


def test_a_bad_launcher_is_one_line_before_anything_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.compare", "--dataset", "numbers", "--launcher", "pbs",
                          "--out_dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "launcher must be one of inline, local, slurm" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "compare-numbers").exists()
