"""Nothing lost: a run killed with SIGKILL and resumed ends exactly where the uninterrupted
run ends, and a crash during a checkpoint write leaves the previous checkpoint loadable.

The kill test runs the real commands (the LM trainer and the GAN trainer) in
subprocesses and the uninterrupted reference in this process, all with one thread so the
float arithmetic is the same everywhere, and compares every checkpoint entry with
torch.equal, no tolerance: data order, RNG states, optimiser states, learning-rate and
beta schedules, EMA and best-on-validation bookkeeping must all survive the restart.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from experiments.core import checkpoint as ckptlib
from experiments.core.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parent.parent
# dropout > 0 so that the RNG state matters; checkpoints every 5 steps, evaluations every 20
LM_ARGS = ["--dataset", "numbers", "--model", "gpt2", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
           "--dropout", "0.1", "--batch_size", "16", "--max_steps", "60", "--warmup_steps", "5",
           "--eval_interval", "20", "--ckpt_interval", "5", "--log_interval", "5", "--num_samples", "2",
           "--eval_batch_size", "1024", "--progress", "false"]
# MLE pretraining, then the adversarial phase (beta schedule, EMA, two optimisers, n_critic 2)
GAN_ARGS = ["--dataset", "numbers", "--generator.n_layer", "1", "--generator.n_out_layers", "1",
            "--generator.n_head", "2", "--generator.n_embd", "16", "--noise_dim", "4", "--n_style_tokens", "2",
            "--z_dim", "8", "--w_dim", "8", "--n_mlp", "2", "--discriminator.n_layer", "1",
            "--discriminator.n_head", "2", "--discriminator.n_embd", "16", "--batch_size", "8",
            "--pretrain_steps", "8", "--adv_steps", "40", "--n_critic", "2", "--pretrain_lr", "3e-3",
            "--warmup_steps", "2", "--g_lr", "1e-3", "--d_lr", "1e-3", "--log_interval", "2", "--eval_interval", "4",
            "--eval_batch_size", "1024", "--eval_samples", "16", "--final_samples", "16", "--num_samples", "4",
            "--progress", "false", "--ema_decay", "0.5"]
TRAINERS = {  # module, arguments, total steps, the file whose appearance means "kill now"
    "train_lm": ("experiments.train_lm", LM_ARGS, 60, "best.pt"),          # after the first evaluation
    "train_gan": ("experiments.train_gan", GAN_ARGS, 48, "pretrained.pt"),  # during pretraining or just after
}


def launch(trainer, out_dir, run_name, *extra):
    module, args, _, _ = TRAINERS[trainer]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", module, *args, "--out_dir", str(out_dir),
                             "--run_name", run_name, *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def assert_same_state(a, b, where=""):
    """Tensors equal exactly, everything else equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def kill_after_checkpoint(victims, out, killed_at):
    """SIGKILL each victim as soon as its kill-now file and a last.pt exist."""
    deadline = time.monotonic() + 240
    while len(killed_at) < len(victims) and time.monotonic() < deadline:
        for t, proc in victims.items():
            run = out[t] / "killed"
            if t not in killed_at and (run / TRAINERS[t][3]).exists() and (run / "last.pt").exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at[t] = load_checkpoint(run / "last.pt")["step"] if proc.returncode == -signal.SIGKILL else None
            elif t not in killed_at and proc.poll() is not None:
                killed_at[t] = None  # it ended by itself: reported below
        time.sleep(0.002)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """For every trainer: a run killed with SIGKILL once it has checkpointed and then resumed
    to the end (both in fresh processes), and meanwhile, in this process with one thread
    as in the subprocesses, the uninterrupted reference run."""
    out = {t: tmp_path_factory.mktemp(t) for t in TRAINERS}
    victims = {t: launch(t, out[t], "killed") for t in TRAINERS}
    killed_at = {}
    killer = threading.Thread(target=kill_after_checkpoint, args=(victims, out, killed_at))
    killer.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t, (module, args, _, _) in TRAINERS.items():
            importlib.import_module(module).main([*args, "--out_dir", str(out[t]), "--run_name", "reference"])
    finally:
        torch.set_num_threads(threads)
        killer.join()
    for t, proc in victims.items():
        assert killed_at.get(t) is not None, f"{t} was not killed after a checkpoint: {proc.communicate()[0]}"
    resumed = {t: launch(t, out[t], "killed", "--resume", "true") for t in TRAINERS}
    return out, killed_at, {t: finish(proc) for t, proc in resumed.items()}


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_sigkill_then_resume_equals_the_uninterrupted_run(killed_and_resumed, trainer):
    out, killed_at, logs = killed_and_resumed
    ref, run = out[trainer] / "reference", out[trainer] / "killed"
    assert 0 < killed_at[trainer] < TRAINERS[trainer][2]
    assert f"resumed {run / 'last.pt'}" in logs[trainer] and "settings changed" not in logs[trainer]
    assert "not be bit-identical" not in logs[trainer]  # same threads, world and device: nothing flagged
    for path in sorted(ref.glob("*.pt")):
        a, b = load_checkpoint(path), load_checkpoint(run / path.name)
        for key in ("resume", "run_name"):  # the only settings that differ between the two runs
            a["train_config"].pop(key), b["train_config"].pop(key)
        for key in ("timing", "train_seconds"):  # wall-clock accounting, which only feeds logs
            a.pop(key, None), b.pop(key, None)
        assert_same_state(a, b, path.name)  # weights, EMA, optimisers, step, schedules, best val, RNG
    ma, mb = json.loads((ref / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text())
    for k in [k for k in ma if any(w in k for w in ("second", "ms_per", "time"))]:
        ma.pop(k), mb.pop(k, None)
    assert ma == mb  # validation and test metrics, exactly
    assert (ref / "samples.txt").read_text() == (run / "samples.txt").read_text()
    assert not list(run.glob(".*.tmp"))
    # TensorBoard: what the killed process logged after its last checkpoint is purged, so the
    # resumed run's curves are the uninterrupted run's, each step once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    curves = []
    for d in (ref, run):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        curves.append({tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in ("train/loss", "val/nll")})
    assert curves[0] == curves[1]


# ---------------------------------------------------------------- atomic checkpoint writes

def _payload(value):
    return {"model_name": "gpt2", "model": {"w": torch.full((1000,), float(value))}, "step": value}


def _half_write_then_crash(payload, f, *args, **kwargs):
    """torch.save that dies halfway through, as a full disk or a killed process would."""
    f.write(b"PK\x03\x04" + b"\x00" * 500)
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failure", ["torch.save", "os.replace"])
def test_crash_during_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, failure):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1))
    if failure == "torch.save":
        monkeypatch.setattr(ckptlib.torch, "save", _half_write_then_crash)
    else:
        def replace_fails(src, dst):
            raise OSError("simulated crash before the rename")
        monkeypatch.setattr(ckptlib.os, "replace", replace_fails)
    with pytest.raises(OSError):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["model"]["w"], torch.full((1000,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


def test_temp_file_of_a_killed_writer_is_cleaned_up_by_the_next_save(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1))
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"PK\x03\x04half a checkpoint")  # SIGKILL mid-write
    assert load_checkpoint(path)["step"] == 1
    save_checkpoint(path, _payload(2))
    assert load_checkpoint(path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
