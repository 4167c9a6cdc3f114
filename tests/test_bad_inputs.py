"""Every row of datasets/README.md's table of bad inputs, one test (or one parametrised case) each.

Each bad input must fail early with an error that names the problem and the fix, or,
where the behaviour is a documented choice rather than an error (unknown words at
evaluation, CUDA-only flags on a CPU), do exactly what the table says.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request

import pytest
import torch

from baselines import gpt2 as gpt2_module
from datasets import UNK_ID, LMData, build_tokenizer, load_corpus
from datasets.corpora import CorpusError
from experiments.core import config as cfglib
from experiments import sample, train_lm
from experiments.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from experiments.scoring.nll import lm_nll

TINY = ["--dataset", "numbers", "--model", "gpt2", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
        "--batch_size", "16", "--eval_interval", "10", "--log_interval", "5", "--num_samples", "2",
        "--eval_batch_size", "1024", "--progress", "false", "--warmup_steps", "5"]


def run(tmp_path, *extra):
    return train_lm.main(TINY + ["--out_dir", str(tmp_path), "--run_name", "r", *extra])


def lines_file(tmp_path, lines, name="corpus.txt"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


# ---------------------------------------------------------------- corpus files

@pytest.mark.parametrize("content, match", [
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"\x00\x01\x02abc", "NUL bytes: it looks binary"),
    (b"caf\xe9 au lait\n" * 30, r"not valid UTF-8 \(byte 3.*iconv"),
], ids=["empty", "blank", "binary", "non-utf8"])
def test_bad_corpus_file(tmp_path, content, match):
    p = tmp_path / "corpus.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match=match):
        load_corpus(str(p))


def test_missing_corpus_file(tmp_path):
    with pytest.raises(CorpusError, match="nope.txt does not exist"):
        load_corpus(str(tmp_path / "nope.txt"))


def test_directory_given_as_corpus(tmp_path):
    with pytest.raises(CorpusError, match="is a directory; give the text file inside it"):
        load_corpus(str(tmp_path) + "/")


def test_too_little_text(tmp_path):
    with pytest.raises(CorpusError, match="needs at least 20.*mode='stream'"):
        load_corpus(str(lines_file(tmp_path, ["one line", "two lines"])))
    with pytest.raises(CorpusError, match="at least 100"):
        load_corpus(str(lines_file(tmp_path, ["short"])), mode="stream")


def test_corrupt_copy_of_a_real_corpus(tmp_path):
    (tmp_path / "names.txt").write_text("not the real file\n")
    with pytest.raises(CorpusError, match="sha256.*Replace it with https://"):
        load_corpus("names", data_dir=str(tmp_path))


def test_real_corpus_offline_without_a_copy(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CorpusError, match=r"names\.txt.*Place the file in .*(data dir|TEXTDUEL_DATA_DIR)"):
        load_corpus("names", data_dir=str(tmp_path))


# ---------------------------------------------------------------- names

def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(CorpusError, match=r"unknown dataset 'namez': did you mean 'names'\? choose one of"):
        load_corpus("namez")


def test_unknown_model_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown model 'gpt3': did you mean 'gpt2'\? choose one of"):
        train_lm.parse_args(["--model", "gpt3"])


def test_unknown_setting_suggests_the_closest():
    with pytest.raises(cfglib.ConfigError, match="did you mean.*n_layer"):
        train_lm.parse_args(["--n_layers", "4"])
    with pytest.raises(cfglib.ConfigError, match="did you mean.*max_steps"):
        train_lm.parse_args(["--max_step=4"])


def test_unknown_preset_lists_the_presets():
    with pytest.raises(cfglib.ConfigError, match="gpt2 has no preset 'tiny'; choose one of"):
        train_lm.parse_args(["--preset", "tiny"])


# ---------------------------------------------------------------- config values

@pytest.mark.parametrize("argv, match", [
    (["--batch_size", "-2"], r"batch_size must be positive, got -2; set --batch_size"),
    (["--max_steps", "0"], "max_steps must be positive"),
    (["--n_layer", "-1"], "n_layer must be positive"),
    (["--ckpt_interval", "-5"], r"ckpt_interval must be >= 0.*0 \(off\)"),
    (["--n_embd", "30", "--n_head", "4"], r"n_embd \(30\) must be divisible by n_head \(4\); try n_head=3"),
    (["--lr", "0"], "lr > 0"),
    (["--lr", "nan"], "train.lr must be a finite number"),
    (["--lr", "1e-3", "--min_lr", "1e-2"], "min_lr <= lr"),
    (["--dropout", "1.5"], r"dropout must be in \[0, 1\)"),
    (["--lr", "fast"], "must be a float, got 'fast'"),
    (["--max_steps", "2.5"], "must be a int, got"),
    (["--compile", "maybe"], "true or false"),
    (["--lr"], r"--lr needs a value \(--lr=VALUE\)"),
    (["lr=3"], "unexpected argument 'lr=3'; settings are given as --key=value"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_invalid_config_value(argv, match):
    with pytest.raises((cfglib.ConfigError, ValueError), match=match):
        train_lm.parse_args(argv)


def test_bad_config_file(tmp_path):
    with pytest.raises(cfglib.ConfigError, match="does not exist"):
        train_lm.parse_args(["--config", str(tmp_path / "missing.toml")])
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1\n")
    with pytest.raises(cfglib.ConfigError, match="is not valid TOML"):
        train_lm.parse_args(["--config", str(bad)])
    yaml = tmp_path / "run.yaml"
    yaml.write_text("lr: 1\n")
    with pytest.raises(cfglib.ConfigError, match="must end in .toml or .json"):
        train_lm.parse_args(["--config", str(yaml)])


@pytest.mark.parametrize("argv, error, match", [
    (["--dtype", "float64"], ValueError, "dtype must be auto, float32, bfloat16 or float16"),
    (["--batch_size", "16", "--grad_accum", "3"], ValueError, "must be divisible by world size x grad_accum"),
], ids=["dtype", "grad_accum"])
def test_invalid_run_setting(tmp_path, argv, error, match):
    with pytest.raises(error, match=match):
        run(tmp_path, "--max_steps", "1", *argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_absent_device(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA is not available here; use device=auto or device=cpu"):
        run(tmp_path, "--max_steps", "1", "--device", "cuda")


def test_cuda_only_flags_on_cpu_are_ignored_with_a_warning(tmp_path):
    with pytest.warns(UserWarning) as record:
        metrics = run(tmp_path, "--max_steps", "3", "--device", "cpu", "--compile", "true", "--dtype", "bfloat16")
    messages = " ".join(str(w.message) for w in record)
    assert "dtype=bfloat16 ignored on cpu" in messages and "compile=true ignored on cpu" in messages
    assert metrics["steps"] == 3 and math.isfinite(metrics["test/nll"])


# ---------------------------------------------------------------- text and context

def test_text_longer_than_the_context():
    c = load_corpus("numbers")  # the longest example has 6 words: it needs block_size 7
    with pytest.raises(CorpusError, match="needs block_size >= 7, but block_size = 4. Raise block_size"):
        LMData(c, build_tokenizer(c), block_size=4)
    model = gpt2_module.GPT(gpt2_module.GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="sequence of length 5 exceeds block_size 4"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_unknown_words_at_evaluation_become_unk_and_are_scored(tmp_path):
    corpus = load_corpus(str(lines_file(tmp_path, ["the cat sat"] * 40)), level="word")
    corpus.test = corpus.test + ["the zebra sat"]  # a word the training split never had
    tok = build_tokenizer(corpus)
    assert "zebra" not in tok.stoi
    data = LMData(corpus, tok)
    x, y = data.splits["test"].x, data.splits["test"].y
    assert int((y == UNK_ID).sum()) == 1 and int((x == UNK_ID).sum()) == 1
    model = gpt2_module.GPT(gpt2_module.GPTConfig(vocab_size=tok.vocab_size, block_size=data.block_size,
                                                  n_layer=1, n_head=1, n_embd=8))
    nll = lm_nll(model, data.eval_batches("test", 64), "cpu")
    assert nll["tokens"] == sum(len(t.split()) + 1 for t in corpus.test)  # <unk> counted like any token
    assert tok.decode(tok.encode("the zebra")) == "the <unk>"


# ---------------------------------------------------------------- non-finite training

def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    run(tmp_path, "--max_steps", "10")
    before = (tmp_path / "r" / "last.pt").read_bytes()
    with pytest.raises(FloatingPointError, match=r"non-finite .* at step 1\d; .*last\.pt \(step 10\) is intact. "
                                                 r"Lower lr \(now 1e\+30\)"):
        run(tmp_path, "--max_steps", "20", "--resume", "true", "--lr", "1e30")
    assert (tmp_path / "r" / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 10


def test_nan_gradient_never_reaches_the_weights(tmp_path, monkeypatch):
    """A finite loss whose gradient is NaN (the torch.where trap), injected at the 10th
    training step, which is also an evaluation step: without the gradient-norm check the
    NaN update would be written into last.pt."""
    forward, calls = gpt2_module.GPT.forward, []

    def poisoned(self, idx, targets=None, cache=None):
        logits, loss = forward(self, idx, targets, cache)
        if targets is not None:
            calls.append(1)
            if len(calls) == 10:
                w = self.lm_head.weight
                loss = torch.where(torch.tensor(True), loss, torch.sqrt(-(w * w).sum() - 1))  # value finite, grad NaN
        return logits, loss

    monkeypatch.setattr(gpt2_module.GPT, "forward", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm \(nan\) at step 9; .*\(step 5\) is intact"):
        run(tmp_path, "--max_steps", "20", "--eval_interval", "5")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["step"] == 5 and all(bool(torch.isfinite(v).all()) for v in ckpt["model"].values())


# ---------------------------------------------------------------- checkpoints

def test_resume_with_nothing_to_resume(tmp_path):
    with pytest.raises(CheckpointError, match=r"no .*last.pt to continue from; check --out_dir and --run_name"):
        run(tmp_path, "--max_steps", "1", "--resume", "true")


def test_truncated_checkpoint(tmp_path):
    p = tmp_path / "x.pt"
    save_checkpoint(p, {"model_name": "gpt2", "model": {"w": torch.zeros(100)}})
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*use an earlier checkpoint"):
        load_checkpoint(p)


def test_bit_flipped_checkpoint(tmp_path):
    p = tmp_path / "x.pt"
    save_checkpoint(p, {"model_name": "gpt2", "model": {"w": torch.randn(4096)}})
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's bytes: torch.load alone would not notice
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its CRC check"):
        load_checkpoint(p)


def test_file_that_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(text)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="is not a TextDuel checkpoint"):
        load_checkpoint(tensor)


class Arbitrary:  # a pickled object weights_only=True must refuse
    pass


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"model_name": "gpt2", "model": {}, "extra": Arbitrary()}, p)
    with pytest.raises(CheckpointError, match="weights_only=True refuses"):
        load_checkpoint(p)


@pytest.mark.parametrize("argv, match", [
    (["--model", "OTHER"], "checkpoint holds model 'gpt2', but this run builds 'bigram-neural'"),
    (["--n_embd", "32"], "model config differs.*n_embd: checkpoint 16 vs run 32"),
    (["--dataset", "VOCAB"], r"vocabulary \(33 symbols\) differs.*only in this dataset"),
    (["--dataset", "SAMEVOCAB"], "trained on other data: dataset: checkpoint 'numbers' vs run"),
], ids=["model", "config", "vocabulary", "dataset"])
def test_resume_into_another_model_config_vocabulary_or_dataset(tmp_path, argv, match):
    run(tmp_path, "--max_steps", "2", "--eval_interval", "2")
    words = sorted(set(" ".join(load_corpus("numbers").train).split()))
    if "VOCAB" in argv:  # one word more than numbers has
        argv = ["--dataset", str(lines_file(tmp_path, [f"{w} apple" for w in words] * 20)), "--level", "word"]
    elif "SAMEVOCAB" in argv:  # exactly the words of numbers, in other sentences
        argv = ["--dataset", str(lines_file(tmp_path, [f"{w} {w}" for w in words] * 20)), "--level", "word"]
    with pytest.raises(CheckpointError, match=match + ".*start a new run"):
        if "OTHER" in argv:  # TINY's gpt2 sizes are not settings of another model: a plain command line
            train_lm.main(["--model", "bigram-neural", "--out_dir", str(tmp_path), "--run_name", "r",
                           "--resume", "true", "--progress", "false"])
        else:
            run(tmp_path, "--max_steps", "4", "--resume", "true", *argv)


def test_sampling_a_checkpoint_of_an_unregistered_model(tmp_path):
    run(tmp_path, "--max_steps", "2", "--eval_interval", "2")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    save_checkpoint(tmp_path / "other.pt", {**ckpt, "model_name": "gpt5"})
    with pytest.raises(CheckpointError, match="holds model 'gpt5', which this version does not register"):
        sample.main(["--ckpt", str(tmp_path / "other.pt")])



def test_readme_table_names_exactly_the_tests_here():
    """datasets/README.md's Bad inputs table names every test of this file, and no other."""
    import re
    import sys
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "datasets" / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Bad inputs"):]
    listed = set(re.findall(r"→ `(test_\w+)`", table))
    here = {n for n in dir(sys.modules[__name__]) if n.startswith("test_")} - {"test_readme_table_names_exactly_the_tests_here"}
    assert listed == here
