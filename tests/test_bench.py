"""The benchmark command runs, in its quick mode, for every registered model, and CUDA-only
flags on a CPU are reported and ignored rather than crashing it."""

import pytest

from baselines import MODELS
from experiments import bench


def test_quick_bench_covers_every_registered_model(capsys):
    results = bench.main(["--quick", "true", "--device", "cpu"])
    out = capsys.readouterr().out
    assert set(results["models"]) == set(MODELS)
    for name, r in results["models"].items():
        assert r["train_tokens_per_sec"] > 0 and r["ms_per_iter"] > 0 and r["sample_tokens_per_sec_no_cache"] > 0
        assert (r["sample_tokens_per_sec_cache"] is not None) == hasattr(MODELS[name][0], "init_cache")
        assert r["peak_bytes"] >= 0 and r["mfu"] is None  # MFU on CUDA only
        assert name in out
    nano = results["nanogpt_cpu"]
    assert 0.7e6 < nano["params"] < 0.9e6 and nano["tokens_per_sec"] > 0  # 4 x 128 GPT-2 with vocab 65: 0.8M
    assert "nanoGPT's CPU config" in out and "ms/iter" in out
    assert results["bleu"]["max_abs_diff"] < 1e-12 and results["bleu"]["speedup"] > 0
    guided = {r["sampler"]: r for r in results["guided"]}
    assert guided["plain"]["candidates"] == 1.0 and guided["SIR, alpha 1, m 8"]["candidates"] == 8.0
    assert all(r["samples_per_sec"] > 0 for r in guided.values()) and "Guided sampling" in out
    assert guided["DRS, gamma 2"]["candidates"] >= guided["DRS, gamma 0"]["candidates"] >= 1.0


def test_cuda_only_flags_on_cpu_are_noted_and_ignored(capsys):
    results = bench.main(["--quick", "true", "--device", "cpu", "--models", "bigram-neural", "--bleu", "false",
                          "--guided", "false", "--compile", "true", "--dtype", "bfloat16", "--fused", "true"])
    out = capsys.readouterr().out
    assert "dtype float32 | compile off | fused AdamW off" in out
    for flag in ("dtype=bfloat16", "compile=true", "fused=true"):
        assert f"note: {flag} ignored on cpu" in out
    assert results["models"]["bigram-neural"]["train_tokens_per_sec"] > 0


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown model\(s\) 'gtp2' \(did you mean 'gpt2'\?\)"):
        bench.main(["--models", "gtp2"])
