"""experiments.score: any samples file scored under TextDuel's metrics, checked against nltk,
hand counts, and the trainers' own NLL on tiny checkpoints (CPU, seconds)."""

import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from datasets import numbers as numbers_mod
from datasets.batching import SequenceSplit
from datasets.corpora import CorpusError, load_corpus
from datasets.tokenizers import BOS_ID, EOS_ID, UNK_ID
from experiments import score, train_gan, train_lm
from experiments.core.config import ConfigError
from experiments.scoring.nll import latent_nll, lm_nll
from experiments.generators.generation import load_generator, load_model

NS = (2, 3, 4, 5)
METHOD1 = SmoothingFunction().method1

SAMPLES = ["A man rides a horse .", "a dog runs on the beach", "", "two cats sit on a mat",
           "A man rides a horse .", "the Dog runs"]
REFERENCES = ["a man rides a horse on the beach .", "A dog runs along the beach .", "",
              "two cats sleep on a red mat", "the man walks his dog", "a horse ."]
TRAIN = ["a dog runs on the beach", "A man rides a horse .", "THE DOG RUNS", "something else"]


def words(line, lowercase=False):
    """The word tokenizer's rule, written out: words and punctuation marks."""
    return re.findall(r"\w+|[^\w\s]", line.lower() if lowercase else line)


def nltk_bleu(refs, hyp, n):
    return sentence_bleu(refs, hyp, weights=(1 / n,) * n, smoothing_function=METHOD1)


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # trailing newline: not an extra sample
    return str(path)


def files(tmp_path):
    return (write(tmp_path / "samples.txt", SAMPLES), write(tmp_path / "refs.txt", REFERENCES),
            write(tmp_path / "train.txt", TRAIN))


def test_figures_equal_nltk_and_hand_counts(tmp_path):
    s, r, t = files(tmp_path)
    out = score.main(["--samples", s, "--references", r, "--train", t, "--level", "word",
                      "--json", str(tmp_path / "out" / "scores.json")])
    hyps = [words(x) for x in SAMPLES]
    refs = [words(x) for x in REFERENCES if x]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero n-gram counts
        for n in NS:
            want = sum(nltk_bleu(refs, h, n) for h in hyps) / len(hyps)
            assert abs(out[f"bleu{n}"] - want) < 1e-12, n
            want = sum(nltk_bleu(hyps[:j] + hyps[j + 1:], h, n) for j, h in enumerate(hyps)) / len(hyps)
            assert abs(out[f"self_bleu{n}"] - want) < 1e-12, n
    assert out["n_samples"] == 6 and out["n_references"] == 5  # the empty sample kept, the empty reference not
    assert out["length_min"] == 0 and out["length_max"] == 6
    assert out["length_mean"] == sum(map(len, hyps)) / 6
    assert out["unique_share"] == 5 / 6
    # novel: "", "two cats sit on a mat", "the Dog runs" (case matters: "THE DOG RUNS" is another line)
    assert out["novelty"] == 3 / 6
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert saved["metrics"] == out
    assert saved["settings"]["level"] == "word" and saved["settings"]["samples"] == s
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "scores.json"]  # no temporary file left


def test_lowercase_changes_tokens_everywhere(tmp_path):
    s, r, t = files(tmp_path)
    out = score.main(["--samples", s, "--references", r, "--train", t, "--lowercase", "true"])
    assert out["novelty"] == 2 / 6  # "the dog runs" is now a training line
    hyps = [words(x, lowercase=True) for x in SAMPLES]
    refs = [words(x, lowercase=True) for x in REFERENCES if x]
    assert abs(out["bleu2"] - sum(nltk_bleu(refs, h, 2) for h in hyps) / 6) < 1e-12


def test_bom_and_control_characters_do_not_change_the_tokens(tmp_path):
    s, r, _ = files(tmp_path)
    dirty = tmp_path / "dirty.txt"
    dirty.write_text("\ufeff" + "\n".join(SAMPLES).replace("dog", "d\x07og") + "\n", encoding="utf-8")
    assert score.main(["--samples", str(dirty), "--references", r]) == score.main(["--samples", s, "--references", r])


def test_bad_inputs_fail_clearly(tmp_path):
    s, r, _ = files(tmp_path)
    with pytest.raises(CorpusError, match="samples file .*nope.txt does not exist"):
        score.main(["--samples", str(tmp_path / "nope.txt"), "--references", r])
    with pytest.raises(CorpusError, match="at least 2"):
        score.main(["--samples", write(tmp_path / "one.txt", ["a dog"]), "--references", r])
    with pytest.raises(ConfigError, match="--references"):
        score.main(["--samples", s])
    with pytest.raises(ConfigError, match="level"):
        score.main(["--samples", s, "--references", r, "--level", "bpe"])


# ---------------------------------------------------------------------------------------
# with a checkpoint

ANIMALS = ["cat", "dog", "bird", "fish", "cow", "horse"]
PLACES = ["mat", "sofa", "beach", "road", "grass"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    lines = [f"the {a} sat on the {p}" if i % 2 else f"a {a} runs to the {p} ."
             for i, (a, p) in enumerate((a, p) for a in ANIMALS for p in PLACES)] * 2
    corpus = write(root / "corpus.txt", lines)
    metrics = train_lm.main(["--dataset", corpus, "--level", "word", "--model", "gpt2", "--n_layer", "1",
                             "--n_head", "2", "--n_embd", "16", "--max_steps", "20", "--eval_interval", "20",
                             "--batch_size", "16", "--warmup_steps", "5", "--num_samples", "2", "--eval_samples", "0",
                             "--progress", "false", "--out_dir", str(root), "--run_name", "r", "--device", "cpu"])
    return root, corpus, metrics


def test_lm_nll_on_references(lm_run, tmp_path):
    root, corpus, _ = lm_run
    ckpt = str(root / "r" / "best.pt")
    refs = ["the cat sat on the mat", "a zebra runs to the moon .", "the dog sat on the grass"]
    s = write(tmp_path / "s.txt", ["the cat sat", "a dog runs to the zebra ."])
    out = score.main(["--samples", s, "--references", write(tmp_path / "r.txt", refs), "--ckpt", ckpt,
                      "--device", "cpu"])
    model, tok = load_model(ckpt, "cpu")
    split = SequenceSplit(refs, tok, model.block_size)
    assert out["nll"] == pytest.approx(lm_nll(model, [split.rows([0, 1, 2])], "cpu")["nll"], abs=1e-9)
    # the definition, one line at a time, no padding anywhere: -log p of every token and <eos>
    total, count = 0.0, 0
    for line in refs:
        ids = tok.encode(line)
        logits, _ = model(torch.tensor([[BOS_ID] + ids]))
        total += F.cross_entropy(logits[0], torch.tensor(ids + [EOS_ID]), reduction="sum").item()
        count += len(ids) + 1
    assert out["nll"] == pytest.approx(total / count, rel=1e-5)
    assert tok.encode("zebra moon") == [UNK_ID, UNK_ID]
    assert out["nll_oov_rate"] == 2 / 19  # zebra, moon among 6 + 7 + 6 reference tokens
    assert "nll_K" not in out


def test_lm_nll_equals_the_trainers_test_nll(lm_run, tmp_path):
    root, corpus, metrics = lm_run
    test_lines = load_corpus(corpus, level="word").test
    r = write(tmp_path / "test.txt", test_lines)
    out = score.main(["--samples", write(tmp_path / "s.txt", ["a", "b"]), "--references", r,
                      "--ckpt", str(root / "r" / "best.pt"), "--device", "cpu"])
    assert out["nll"] == pytest.approx(metrics["test/nll"], abs=1e-9)


def test_checkpoint_settings_must_agree(lm_run, tmp_path):
    root, _, _ = lm_run
    argv = ["--samples", write(tmp_path / "s.txt", ["a cat", "a dog"]),
            "--references", write(tmp_path / "r.txt", ["the cat sat on the mat"]), "--ckpt", str(root / "r" / "best.pt")]
    with pytest.raises(ConfigError, match=r"--level char .*word-level"):
        score.main(argv + ["--level", "char"])
    with pytest.raises(ConfigError, match="lowercase"):
        score.main(argv + ["--lowercase", "true"])
    assert score.main(argv + ["--level", "word"])["nll"] > 0
    long_refs = write(tmp_path / "long.txt", ["the cat sat on the mat"] + ["the cat sat on the mat " * 3] * 2)
    with pytest.raises(CorpusError, match=r"2 of 3 reference lines are longer than the model's block_size"):
        score.main(argv[:2] + ["--references", long_refs, "--ckpt", str(root / "r" / "best.pt")])


GAN_TINY = ["--dataset", "numbers", "--generator.n_layer", "1", "--generator.n_out_layers", "1",
            "--generator.n_head", "2", "--generator.n_embd", "16", "--noise_dim", "4", "--n_style_tokens", "2",
            "--z_dim", "8", "--w_dim", "8", "--n_mlp", "2", "--discriminator.n_layer", "1",
            "--discriminator.n_head", "2", "--discriminator.n_embd", "16", "--batch_size", "8",
            "--warmup_steps", "2", "--eval_interval", "4", "--eval_batch_size", "1024", "--eval_samples", "16",
            "--final_samples", "16", "--num_samples", "2", "--progress", "false", "--device", "cpu",
            "--pretrain_steps", "4", "--adv_steps", "0", "--nll_samples", "2"]


def test_gan_latent_nll_on_references(tmp_path):
    results = train_gan.main(GAN_TINY + ["--out_dir", str(tmp_path), "--run_name", "g"])
    ckpt = str(tmp_path / "g" / "last.pt")
    test_lines = numbers_mod.splits()["test"]
    argv = ["--samples", write(tmp_path / "s.txt", test_lines[:20]), "--references", write(tmp_path / "r.txt", test_lines),
            "--ckpt", ckpt, "--device", "cpu"]
    # the run's K (2), its seed and its batch size: the trainer's own figure for the EMA generator
    out = score.main(argv + ["--seed", "1337", "--batch_size", "1024"])
    assert out["nll_K"] == 2
    assert out["nll"] == pytest.approx(results["ema/test_nll"], abs=1e-9)
    out = score.main(argv + ["--nll_samples", "3"])
    gen, tok, _ = load_generator(ckpt, "cpu")
    split = SequenceSplit(test_lines, tok, gen.block_size)
    assert out["nll_K"] == 3  # the evaluation pass every NLL makes: length-sorted batches of 256
    batches = split.batches(256)
    assert out["nll"] == pytest.approx(latent_nll(gen, batches, 3, "cpu", seed=0)["nll"], abs=1e-9)
    assert out["nll_oov_rate"] == 0.0 and math.isfinite(out["nll"])
