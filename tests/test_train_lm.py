"""The LM training and sampling commands end to end, on tiny settings."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments import sample, train_lm
from experiments.core.checkpoint import load_checkpoint

TINY = ["--dataset", "numbers", "--model", "gpt2", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
        "--batch_size", "16", "--eval_interval", "10", "--log_interval", "5", "--num_samples", "4",
        "--eval_batch_size", "512", "--progress", "false", "--warmup_steps", "5"]


def run(tmp_path, *extra):
    return train_lm.main(TINY + ["--out_dir", str(tmp_path), "--run_name", "r", *extra])


def test_train_end_to_end_with_tensorboard_events(tmp_path):
    metrics = run(tmp_path, "--max_steps", "20")
    run_dir = tmp_path / "r"
    for f in ("best.pt", "last.pt", "config.json", "metrics.json", "samples.txt"):
        assert (run_dir / f).is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 20
    assert 0 < metrics["test/nll"] < 3.5  # ln(33) = 3.50 at init; it must have learned something
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/nll", "lr", "grad_norm", "tokens_per_sec", "hparam/test_nll"} <= scalars
    assert [e.step for e in acc.Scalars("val/nll")] == [10, 20]
    assert "samples/text_summary" in acc.Tags()["tensors"]
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert losses[-1] < losses[0]


def test_checkpoint_contents_and_sampling_command(tmp_path, capsys):
    run(tmp_path, "--max_steps", "10")
    ckpt = load_checkpoint(tmp_path / "r" / "best.pt")
    assert {"model_name", "model_config", "model", "optimizer", "tokenizer", "train_config", "step", "rng"} <= set(ckpt)
    assert "_orig_mod" not in "".join(ckpt["model"])  # the unwrapped module's keys
    capsys.readouterr()
    texts = sample.main(["--ckpt", str(tmp_path / "r" / "best.pt"), "--num_samples", "3", "--seed", "1"])
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts == sample.main(["--ckpt", str(tmp_path / "r" / "best.pt"), "--num_samples", "3", "--seed", "1"])


def test_resume_continues_from_last_checkpoint(tmp_path):
    run(tmp_path, "--max_steps", "10")
    metrics = run(tmp_path, "--max_steps", "20", "--resume", "true")
    assert metrics["steps"] == 20
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 20
