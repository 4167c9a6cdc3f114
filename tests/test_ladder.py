"""The ladder command (experiments/ladder.py) end to end on a tiny setting, and the
shipped ladder configs against the ladder's acceptance protocol (names, makemore's split,
batch 32, at most 20,000 steps, no more parameters than makemore's model of the type)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from baselines import MODELS
from experiments import ladder, train_lm

CONFIGS = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "lm"
NAMES_VOCAB, NAMES_BLOCK = 30, 16  # names.txt: 26 letters + 4 specials; longest name 15 + <bos>


@pytest.mark.parametrize("model", ladder.LADDER)
def test_ladder_config_follows_the_acceptance_protocol(model):
    cfg, model_cfg = train_lm.parse_args(["--config", str(CONFIGS / f"names_{model}.toml")])
    assert (cfg.model, cfg.dataset, cfg.split, cfg.batch_size) == (model, "names", "makemore", 32)
    assert cfg.max_steps <= 20_000
    model_cls, _ = MODELS[model]
    net = model_cls(dataclasses.replace(model_cfg, vocab_size=NAMES_VOCAB, block_size=NAMES_BLOCK))
    params = sum(p.numel() for p in net.parameters())
    if model == "bigram":
        assert params == 0  # fitted in closed form: counts in a buffer, nothing trainable
    elif model == "bigram-neural":
        # a full table over TextDuel's 30 symbols (makemore has 27: no <pad>/<unk>, one token for <bos> and <eos>)
        assert params == NAMES_VOCAB ** 2
    else:
        assert params <= ladder.MAKEMORE[model]["params"], f"{model}: {params:,} parameters"


def test_ladder_trains_collects_and_writes_the_table(tmp_path):
    table = tmp_path / "research" / "results.md"
    common = ["--models", "bigram,bigram-neural", "--config_dir", str(CONFIGS), "--dataset", "numbers", "--out_dir", str(tmp_path / "runs"),
              "--table", str(table), "--progress", "false", "--num_samples", "3"]
    assert ladder.main(common + ["--max_steps", "30"]) == table
    text = table.read_text()
    for model in ("bigram", "bigram-neural"):
        metrics = json.loads((tmp_path / "runs" / model / "metrics.json").read_text())
        row = next(line for line in text.splitlines() if line.startswith(f"| {model} |"))
        assert f"**{metrics['test/nll']:.4f}**" in row  # the figure of the run, not a typed one
    assert "| bigram-neural | 1,089 | numbers | 30 |" in text  # 33 x 33 table; no makemore figures off names
    assert text.count("- **bigram") == 2  # samples of both
    # --collect rebuilds the same table from the runs alone, training nothing
    table.unlink()
    ladder.main(common + ["--collect", "true"])
    assert table.read_text() == text


def test_ladder_bench_writes_step_times(tmp_path):
    out = ladder.main(["--models", "bigram-neural", "--config_dir", str(CONFIGS), "--dataset", "numbers", "--bench", "true", "--bench_steps", "5",
                       "--out_dir", str(tmp_path / "runs"), "--table", str(tmp_path / "results.md"),
                       "--progress", "false"])
    assert out == tmp_path / "bench.md"
    row = next(line for line in out.read_text().splitlines() if line.startswith("| bigram-neural |"))
    assert float(row.split("|")[3]) > 0  # ms per step measured
    assert row.strip().endswith("| 0.9 |")  # makemore's figure beside it


def test_ladder_refuses_unknown_models():
    with pytest.raises(ValueError, match="registered models"):
        ladder.main(["--models", "bigramm", "--collect", "true"])
