"""The benchmark command runs, in its quick mode, for every registered model, and CUDA-only
flags on a CPU are reported and ignored rather than crashing it; its peak, padding and judge
sections give sane figures, and each can be turned off."""

import pytest

from baselines import MODELS
from experiments import bench


def test_quick_bench_covers_every_registered_model(capsys):
    # the peak, padding and judge sections have their own test below
    results = bench.main(["--quick", "true", "--device", "cpu", "--peak", "false", "--padding", "false",
                          "--judge", "false"])
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
                          "--guided", "false", "--compile", "true", "--dtype", "bfloat16", "--fused", "true",
                          "--peak", "false", "--padding", "false", "--judge", "false"])
    out = capsys.readouterr().out
    assert not {"peak", "padding", "judge"} & set(results)  # each section's flag turns it off
    assert "dtype float32 | compile off | fused AdamW off" in out
    for flag in ("dtype=bfloat16", "compile=true", "fused=true"):
        assert f"note: {flag} ignored on cpu" in out
    assert results["models"]["bigram-neural"]["train_tokens_per_sec"] > 0


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown model\(s\) 'gtp2' \(did you mean 'gpt2'\?\)"):
        bench.main(["--models", "gtp2"])


def test_quick_peak_padding_and_judge_sections(capsys):
    results = bench.main(["--quick", "true", "--device", "cpu", "--models", "bigram", "--bleu", "false",
                          "--guided", "false"])
    out = capsys.readouterr().out
    assert "matmul peak (1 thread, fp32)" in out and "padding share" in out and "the judge's scorer GPT-2" in out

    peak = results["peak"]
    assert set(peak["matmul_flops"]) == {256, 512} and min(peak["matmul_flops"].values()) > 1e8
    assert peak["peak_flops"] == max(peak["matmul_flops"].values())
    mle = {(r["vocab"], r["sizes"]["n_layer"], r["sizes"]["n_embd"]): r for r in peak["mle"]}
    assert set(mle) == {(v, *s) for v in ("word", "BPE") for s in ((2, 64), (4, 128))}
    for (vocab, n_layer, n_embd), r in mle.items():
        assert r["vocab_size"] == 2048 if vocab == "BPE" else 15_000 < r["vocab_size"] < 20_000  # every training word
        assert r["tokens_per_sec"] > 0 and r["lines_per_sec"] > 0 and r["bytes_per_sec"] > r["lines_per_sec"]
        assert r["flops"] == pytest.approx(6 * r["params"] * r["tokens_per_sec"])
        assert 0 < r["share_of_peak"] < 1
        if vocab == "BPE":  # a smaller embedding, and more (shorter) tokens for the same line
            word = mle[("word", n_layer, n_embd)]
            assert r["params"] < word["params"]
            assert r["tokens_per_sec"] / r["lines_per_sec"] > word["tokens_per_sec"] / word["lines_per_sec"]

    padding = results["padding"]
    rows = {r["corpus"]: r for r in padding["rows"]}
    assert {"numbers", "messages"} <= set(rows) and set(rows) | set(padding["skipped"]) == {"numbers", "names", "coco",
                                                                                            "messages"}
    assert rows["messages"]["lines"] == 10_000 and rows["numbers"]["longest"] == 7  # "seven thousand seven hundred seventy seven", <eos>
    for r in rows.values():
        assert 1 < r["mean_tokens"] <= r["longest"]
        for bs in (32, 64):
            assert 1.0 <= r["length"][bs] <= r["random"][bs]
    assert rows["messages"]["random"][64] > 2 > 1.2 > rows["messages"]["length"][64]  # its heavy tail of lengths

    judge = results["judge"]
    assert judge["scorer"]["n_layer"] == 2 and judge["scorer"]["n_embd"] == 64 and judge["budgets"] == (500, 100)
    rows = {(r["corpus"], r["vocab"]): r for r in judge["rows"]}
    assert {("messages", "BPE"), ("numbers", "BPE"), ("messages", "word")} == set(rows)  # no COCO in quick mode
    for (corpus, vocab), r in rows.items():
        assert r["step_s"] > 0 and r["params"] > 0 and r["block_size"] > 1
        if vocab == "BPE":
            assert r["vocab_size"] <= 2048 and r["val_pass_s"] > 0
            (fit500, rev500), (fit100, rev100) = r["estimates"][500], r["estimates"][100]
            assert fit500 > fit100 > 0 and rev500 > rev100 > 0
            assert fit500 == pytest.approx(500 * r["step_s"] + 5 * r["val_pass_s"])
    word, bpe = rows[("messages", "word")], rows[("messages", "BPE")]
    assert word["val_pass_s"] is None and word["estimates"] is None  # not timed in quick mode
    assert word["vocab_size"] > 15_000 and word["params"] > 3 * bpe["params"]
