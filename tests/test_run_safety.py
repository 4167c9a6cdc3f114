"""Nothing lost, nothing stale: one writer per run directory, temporary files, atomic text,
non-finite settings, resume flags and timing, reuse of finished runs, interrupted comparisons."""

import json
import os
import subprocess
import sys

import pytest
import torch

from experiments import compare, sample, train_gan, train_lm
from experiments.generators import families
from experiments.core.checkpoint import CheckpointError, save_checkpoint, write_text
from experiments.core.config import ConfigError
from experiments.core.logger import RunLogger
from experiments.core.runlock import RunLock
from experiments.reporting.events import read_scalars

TINY = ["--dataset", "numbers", "--model", "gpt2", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
        "--batch_size", "16", "--eval_interval", "5", "--num_samples", "2", "--eval_samples", "0",
        "--progress", "false", "--warmup_steps", "2", "--max_steps", "5"]


def lm(tmp_path, *extra):
    return train_lm.main(TINY + ["--out_dir", str(tmp_path), "--run_name", "r", *extra])


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- one writer per run directory

def test_a_second_run_into_a_busy_run_directory_is_refused(tmp_path, live_pid):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".lock").write_text(json.dumps({"pid": live_pid, "host": os.uname().nodename, "started": 0}))
    with pytest.raises(CheckpointError, match=f"in use by process {live_pid}.*give another --run_name"):
        lm(tmp_path)
    assert not (tmp_path / "r" / "last.pt").exists()  # nothing of the other run's touched


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".lock").write_text(json.dumps({"pid": dead_pid(), "host": os.uname().nodename, "started": 0}))
    lm(tmp_path)
    assert "which is gone; taking it over" in capsys.readouterr().err
    assert not (tmp_path / "r" / ".lock").exists()  # released at the end of the run


def test_lock_from_another_host_is_not_guessed_about(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(CheckpointError, match=r"in use by process 1 on elsewhere.*delete .*\.lock"):
        RunLock(tmp_path).acquire()


# ---------------------------------------------------------------- temporary files, atomic text

def test_a_live_writers_temporary_file_is_left_alone(tmp_path, live_pid):
    theirs = tmp_path / f".last.pt.{live_pid}.x1y2.tmp"
    theirs.write_bytes(b"being written")
    abandoned = tmp_path / f".last.pt.{dead_pid()}.z9.tmp"
    abandoned.write_bytes(b"half")
    save_checkpoint(tmp_path / "last.pt", {"model_name": "gpt2", "model": {}})
    assert theirs.exists() and not abandoned.exists()


def test_text_files_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_text(path, '{"nll": 1.0}')

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_text(path, '{"nll": 2.0, "half": ')
    assert path.read_text() == '{"nll": 1.0}' and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


# ---------------------------------------------------------------- settings

@pytest.mark.parametrize("trainer, argv", [
    (train_lm, ["--temperature", "nan"]), (train_lm, ["--grad_clip", "nan"]), (train_lm, ["--max_minutes", "nan"]),
    (train_lm, ["--weight_decay", "nan"]), (train_gan, ["--psi", "nan"]), (train_gan, ["--temperature", "nan"]),
    (train_gan, ["--info_weight", "nan"]), (train_gan, ["--beta_max", "nan"]), (train_gan, ["--g_lr", "inf"]),
])
def test_non_finite_settings_are_refused_before_anything_runs(trainer, argv):
    with pytest.raises(ConfigError, match=f"{argv[0][2:]} must be a finite number"):
        trainer.parse_args(argv)


def test_data_derived_sizes_cannot_be_set():
    with pytest.raises(ConfigError, match="model.vocab_size = 999 cannot be set: it comes from the data"):
        train_lm.parse_args(["--vocab_size", "999"])
    with pytest.raises(ConfigError, match="discriminator.vocab_size = 7 cannot be set"):
        train_gan.parse_args(["--discriminator.vocab_size", "7"])


GAN_TINY = ["--dataset", "numbers", "--generator.n_layer", "1", "--generator.n_out_layers", "1",
            "--generator.n_head", "2", "--generator.n_embd", "16", "--noise_dim", "4", "--n_style_tokens", "2",
            "--z_dim", "8", "--w_dim", "8", "--n_mlp", "2", "--discriminator.n_layer", "1",
            "--discriminator.n_head", "2", "--discriminator.n_embd", "16", "--batch_size", "8",
            "--eval_interval", "4", "--eval_batch_size", "1024", "--eval_samples", "8", "--final_samples", "8",
            "--num_samples", "2", "--progress", "false"]


def test_a_nan_gradient_in_the_gan_never_reaches_the_weights(tmp_path, monkeypatch):
    """A finite discriminator loss whose gradient is NaN (the torch.where trap) from the 7th
    discriminator step on (step 8): the shared guard stops at the gradient norm, before the update,
    so last.pt (the evaluation at step 6) keeps finite weights. Without the check the NaN update
    would reach D and be caught only by the weight check at the next save, two steps later."""
    import gan as ganlib
    d_loss, g_loss = ganlib.LOSSES["rsgan"]
    calls = []

    def poisoned(d_real, d_fake):
        calls.append(1)
        s = d_real.sum()
        trap = torch.where(torch.tensor(True), 0 * s, torch.sqrt(-s * s - 1))  # value 0, gradient NaN
        return d_loss(d_real, d_fake) + (trap if len(calls) >= 7 else 0)

    monkeypatch.setitem(ganlib.LOSSES, "rsgan", (poisoned, g_loss))
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm \(nan\) at step 8; .*last\.pt "
                                                 r"\(step 6\) is intact"):
        train_gan.main(GAN_TINY + ["--out_dir", str(tmp_path), "--run_name", "r", "--pretrain_steps", "2",
                                   "--adv_steps", "10"])
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ckpt["step"] == 6
    assert all(bool(torch.isfinite(t).all()) for key in ("model", "ema", "discriminator")
               for t in ckpt[key].values() if t.is_floating_point())


def test_a_gan_checkpoint_given_to_sample_points_to_sample_gan(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"model_name": "gan", "model": {}})
    with pytest.raises(CheckpointError, match="is a GAN checkpoint.*python -m experiments.sample_gan --ckpt"):
        sample.main(["--ckpt", str(tmp_path / "last.pt")])


# ---------------------------------------------------------------- resume: flags and timing

def test_resume_flags_what_breaks_bit_exactness(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        lm(tmp_path, "--max_steps", "3", "--eval_interval", "3")
        torch.set_num_threads(2)
        capsys.readouterr()
        lm(tmp_path, "--max_steps", "5", "--resume", "true", "--seed", "7")
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "resume will not be bit-identical to the uninterrupted run: seed 1337 -> 7, threads 1 -> 2" in out


def test_timing_accumulates_across_resumes(tmp_path):
    first = lm(tmp_path, "--max_steps", "5")
    again = lm(tmp_path, "--max_steps", "5", "--resume", "true")  # a finished run, resumed: nothing to do
    # the time stored with the last checkpoint, not the few ms of this call (the checkpoint's own write aside)
    assert again["train_seconds"] == pytest.approx(first["train_seconds"], rel=0.5)
    assert again["ms_per_step"] == first["ms_per_step"]
    longer = lm(tmp_path, "--max_steps", "8", "--resume", "true")
    assert longer["train_seconds"] > first["train_seconds"] and longer["ms_per_step"] is not None


# ---------------------------------------------------------------- comparisons

def cmp(tmp_path, *extra):
    return compare.main(["--models", "bigram", "--experiment", "x", "--out_dir", str(tmp_path / "runs"),
                         "--max_steps", "20", "--eval_interval", "10", "--eval_samples", "0", "--num_samples", "8",
                         "--temperatures", "1.0", "--lm_score", "false", "--reverse_lm_score", "false", *extra])


def test_reuse_refuses_a_run_trained_with_other_settings(tmp_path):
    cmp(tmp_path)
    cmp(tmp_path, "--reuse", "true")  # the same settings: reused
    with pytest.raises(CheckpointError, match=r"x/bigram was trained with other settings .*train.max_steps 20 -> 30"):
        cmp(tmp_path, "--reuse", "true", "--max_steps", "30")


def test_an_interrupted_comparison_marks_its_report_incomplete(tmp_path, monkeypatch):
    cmp(tmp_path)
    report = tmp_path / "runs" / "x" / "report" / "report.md"
    assert not report.read_text().startswith("> **Incomplete.**")

    def killed(argv):
        raise KeyboardInterrupt
    monkeypatch.setattr(families.FAMILIES["lm"], "train", killed)
    with pytest.raises(KeyboardInterrupt):
        cmp(tmp_path)
    assert report.read_text().startswith("> **Incomplete.** A new comparison into this folder started")
    monkeypatch.undo()
    cmp(tmp_path)
    assert not report.read_text().startswith("> **Incomplete.**")


def test_a_run_reopened_within_the_same_second_reads_in_order(tmp_path):
    """TensorBoard reads event files in name order; the names hold whole seconds and a counter
    that sorts as text. A reopened run's file must sort after the old one, or the resumed points
    come first and the restart marker purges nothing (a CI failure of the SeqGAN resume test)."""
    for step, purge in ((0, None), (5, 1), (9, 2)):  # each reopen drops what followed the checkpoint
        log = RunLogger(tmp_path, purge_step=purge)
        log.scalar("val/nll", float(step), step)
        log.scalar("val/nll", float(step + 1), step + 1)
        log.close()
    files = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert len({f.split(".")[3] for f in files}) == 3
    assert read_scalars(tmp_path, ["val/nll"])["val/nll"] == ([0, 9, 10], [0.0, 9.0, 10.0])
