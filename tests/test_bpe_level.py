"""--level bpe through every tool: the trainers learn a byte-level BPE from the training split,
store it in the checkpoint and as tokenizer.json beside it, read it back on resume, and the
sampler and scorer rebuild it from the checkpoint alone; nothing sampled is ever <unk>; sample
metrics split text into the corpus's words or characters, never into subword pieces.

The corpus is written here (mixed case, a BOM, emoji, mixed scripts, a literal "<eos>" and
"<|endoftext|>" inside lines), with its own test file: text no word vocabulary of the project
has seen."""

import json
import math
import random
import shutil

import pytest
import torch

from datasets import DataConfig, build_tokenizer, load_corpus
from datasets.batching import reference_tokenizer
from datasets.bpe import BPETokenizer
from datasets.corpora import CorpusError, read_lines
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from experiments import score, train_gan, train_lm
from experiments.core.checkpoint import CheckpointError, load_checkpoint
from baselines.gpt2 import GPT, GPTConfig
from baselines.sampling import generate
from experiments.generators.generation import banned_ids, lm_texts, load_model
from experiments.scoring.samples import SampleEvaluator

WORDS = ["Cat", "dog", "über", "naïve", "Straße", "привет", "мир", "你好", "😀", "🏳️‍🌈", "run", "ran", "café"]


def write_corpus(folder, n_train=300, n_test=40, seed=0):
    rng = random.Random(seed)

    def line():
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
        if rng.random() < 0.05:
            words.insert(1, rng.choice(["<eos>", "<|endoftext|>", "<unk>"]))
        return " ".join(words) + rng.choice([".", "!", " ?", ""])

    train, test = folder / "train.txt", folder / "test.txt"
    train.write_text("\ufeff" + "\n".join(line() for _ in range(n_train)) + "\n", encoding="utf-8")
    test.write_text("\n".join(line() for _ in range(n_test)) + "\n", encoding="utf-8")
    return train, test


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus_files(tmp_path):
    return write_corpus(tmp_path)


LM = ["--model", "gpt2", "--n_layer", "1", "--n_embd", "32", "--n_head", "2", "--batch_size", "16",
      "--eval_interval", "10", "--eval_samples", "20", "--num_samples", "2", "--progress", "false",
      "--level", "bpe", "--bpe_vocab_size", "400"]


def lm_argv(tmp_path, train, test, *extra):
    return [*LM, "--dataset", str(train), "--test_file", str(test), "--out_dir", str(tmp_path / "runs"),
            "--run_name", "bpe", *extra]


def test_corpus_at_bpe_level_never_unk_and_round_trips(corpus_files):
    train, test = corpus_files
    corpus = DataConfig(dataset=str(train), test_file=str(test), level="bpe", bpe_vocab_size=400).load()
    tok = build_tokenizer(corpus)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size <= 400
    assert build_tokenizer(corpus) is tok  # learnt once per corpus
    for split in ("train", "val", "test"):
        for line in getattr(corpus, split):
            ids = tok.encode(line)
            assert UNK_ID not in ids and tok.decode(ids) == line
    # literal special-token strings stay text
    assert any("<eos>" in line or "<|endoftext|>" in line for line in corpus.train)
    # sample metrics read words, whatever the model's level
    ref = reference_tokenizer(corpus)
    assert ref.level == "word" and ref.split("Cat dog.") == ["Cat", "dog", "."]
    words = SampleEvaluator(DataConfig(dataset=str(train), test_file=str(test)).load(),
                            build_tokenizer(DataConfig(dataset=str(train), test_file=str(test)).load()))
    bpe = SampleEvaluator(corpus, tok)
    samples = corpus.test[:10]
    assert bpe.score(samples) == words.score(samples)


def test_char_corpus_keeps_characters_for_bleu(data_dir):
    corpus = load_corpus("names", data_dir=data_dir, level="bpe", bpe_vocab_size=300)
    assert corpus.text_level == "char" and reference_tokenizer(corpus).level == "char"


def test_bpe_settings_refused_in_one_line():
    with pytest.raises(ValueError, match="bpe_vocab_size must be at least 260"):
        DataConfig(level="bpe", bpe_vocab_size=100)
    with pytest.raises(ValueError, match="give level bpe with it"):
        DataConfig(level="word", tokenizer="tok.json")
    with pytest.raises(CorpusError, match="fixed word-level vocabulary"):
        load_corpus("oracle", level="bpe")
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor GPT-2's vocab.json"):
        BPETokenizer.load_any(".")


def test_train_lm_resume_sample_score_at_bpe_level(tmp_path, corpus_files):
    train, test = corpus_files
    train_lm.main(lm_argv(tmp_path, train, test, "--max_steps", "20"))
    run = tmp_path / "runs" / "bpe"
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["tokenizer"]["level"] == "bpe"
    saved = BPETokenizer.load(run / "tokenizer.json")
    assert saved.itos == Tokenizer.from_state(ckpt["tokenizer"]).itos
    # resumed: bit-exact with the uninterrupted run
    train_lm.main(lm_argv(tmp_path, train, test, "--max_steps", "30", "--resume", "true"))
    resumed = load_checkpoint(run / "last.pt")["model"]
    shutil.rmtree(run)
    metrics = train_lm.main(lm_argv(tmp_path, train, test, "--max_steps", "30"))
    straight = load_checkpoint(run / "last.pt")["model"]
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    # bits per byte of the test text, next to nats per BPE token
    test_lines = read_lines(test)
    n_tokens = sum(len(saved.encode(t)) + 1 for t in test_lines)
    n_bytes = sum(len(t.encode("utf-8")) + 1 for t in test_lines)
    assert metrics["test/bpb"] == pytest.approx(metrics["test/nll"] * n_tokens / math.log(2) / n_bytes)
    # the checkpoint alone rebuilds model and tokenizer; samples hold no special token
    model, tok = load_model(run / "best.pt", "cpu")
    assert tok.level == "bpe" and tok.itos == saved.itos
    texts = lm_texts(model, tok, 50, 24, seed=0)
    assert len(texts) == 50
    samples = tmp_path / "samples.txt"
    # an untrained byte-level model writes any byte, NUL included, which the samples reader refuses
    samples.write_text("\n".join(t.replace("\n", " ").replace("\x00", "") for t in texts) + "\n", encoding="utf-8")
    figures = score.main(["--samples", str(samples), "--references", str(test), "--ckpt", str(run / "best.pt")])
    assert 0 <= figures["bleu4"] <= 1 and figures["nll_oov_rate"] == 0.0 and figures["nll"] > 0


def test_bpe_sampler_bans_specials_that_no_text_encodes_to(tmp_path, corpus_files):
    """An untrained BPE model gives <pad>, <bos> and <unk> about 1/300 each, and they are never drawn."""
    tok = build_tokenizer(DataConfig(dataset=str(corpus_files[0]), level="bpe", bpe_vocab_size=300).load())
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    idx = torch.full((64, 1), BOS_ID)

    def drawn(banned):  # every token drawn, up to each row's <eos> (after it, rows are <pad>-filled)
        out = generate(model, idx, 15, generator=torch.Generator().manual_seed(0), banned=banned)
        return {t for row in out[:, 1:].tolist() for t in row[:row.index(EOS_ID) if EOS_ID in row else None]}

    assert not drawn(banned_ids(0, "bpe")) & {PAD_ID, BOS_ID, UNK_ID}
    assert drawn(None) & {PAD_ID, BOS_ID, UNK_ID}  # the ban is what keeps them out


def test_resume_refuses_another_bpe_vocabulary(tmp_path, corpus_files):
    train, test = corpus_files
    train_lm.main(lm_argv(tmp_path, train, test, "--max_steps", "10"))
    with pytest.raises(CheckpointError, match="bpe_vocab_size"):
        train_lm.main(lm_argv(tmp_path, train, test, "--max_steps", "20", "--resume", "true",
                              "--bpe_vocab_size", "300"))


def test_given_tokenizer_is_used_as_is(tmp_path, corpus_files):
    """--tokenizer: a tokenizer.json of another run, or GPT-2's vocab.json + merges.txt pair."""
    train, test = corpus_files
    other = BPETokenizer.fit(["a completely different corpus of words"] * 50, vocab_size=280)
    other.save(tmp_path / "tok.json")
    pair = tmp_path / "gpt2-files"
    pair.mkdir()
    other._hf.model.save(str(pair))  # vocab.json + merges.txt
    for path in (tmp_path / "tok.json", pair):
        corpus = DataConfig(dataset=str(train), test_file=str(test), level="bpe", tokenizer=str(path)).load()
        tok = build_tokenizer(corpus)
        assert tok.itos == other.itos
        line = corpus.train[0]
        assert tok.decode(tok.encode(line)) == line  # bytes cover any text, whatever the merges


def test_train_gan_at_bpe_level(tmp_path, corpus_files):
    from tests.test_train_gan import TINY
    train, test = corpus_files
    argv = [a for a in TINY]
    argv[argv.index("--dataset") + 1] = str(train)
    train_gan.main(argv + ["--test_file", str(test), "--level", "bpe", "--bpe_vocab_size", "300",
                           "--pretrain_steps", "4", "--adv_steps", "4", "--out_dir", str(tmp_path), "--run_name", "g"])
    run = tmp_path / "g"
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["tokenizer"]["level"] == "bpe" and (run / "tokenizer.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    # bits per byte: the summed NLL in bits over the test text's bytes (+1 a line), from the same pass
    corpus = DataConfig(dataset=str(train), test_file=str(test), level="bpe", bpe_vocab_size=300).load()
    tok = build_tokenizer(corpus)
    n_tokens = sum(len(tok.encode(t)) + 1 for t in corpus.test)
    n_bytes = sum(len(t.encode("utf-8")) + 1 for t in corpus.test)
    assert metrics["ema/test_bpb"] == pytest.approx(metrics["ema/test_nll"] * n_tokens / math.log(2) / n_bytes)
    assert 0 <= metrics["ema/bleu2"] <= 1 and metrics["ema/length_mean"] > 0


def test_one_comparison_of_word_and_bpe_models(tmp_path, corpus_files):
    """[models.<entry>] level = "bpe": entries at other levels side by side. Each row's NLL per
    token is its own vocabulary's; bits per byte shares one denominator (the test text's bytes);
    BLEU splits every row's samples into the corpus's words, whatever the model's level."""
    from experiments import compare
    from experiments.scoring.nll import bits_per_byte
    train, test = corpus_files
    tiny = ["--n_layer", "1", "--n_embd", "16", "--n_head", "2", "--batch_size", "16", "--num_samples", "2"]
    argv = ["--dataset", str(train), "--test_file", str(test), "--models", "gpt2,gpt2bpe", "--experiment", "mix",
            "--out_dir", str(tmp_path / "runs"), "--max_steps", "20", "--eval_interval", "10", "--eval_samples", "8",
            "--num_samples", "24", "--temperatures", "1.0", "--n_show", "2", "--lm_score", "false",
            "--reverse_lm_score", "false", "--models.gpt2bpe.model", "gpt2", "--models.gpt2bpe.level", "bpe",
            "--models.gpt2bpe.bpe_vocab_size", "320"]
    for entry in ("gpt2", "gpt2bpe"):
        for k in range(0, len(tiny), 2):
            argv += [f"--models.{entry}.{tiny[k][2:]}", tiny[k + 1]]
    results = compare.main(argv)
    rows = {r["label"]: r for r in results["rows"] if r["kind"] == "model"}
    assert rows["gpt2"]["tokens"].startswith("word") and rows["gpt2bpe"]["tokens"] == "bpe (320)"
    test_lines = read_lines(test)
    words = build_tokenizer(DataConfig(dataset=str(train), test_file=str(test)).load())
    bpe = build_tokenizer(DataConfig(dataset=str(train), test_file=str(test), level="bpe", bpe_vocab_size=320).load())
    for name, tok in (("gpt2", words), ("gpt2bpe", bpe)):
        m = rows[name]["metrics"]
        n_tokens = sum(len(tok.encode(t)) + 1 for t in test_lines)
        assert m["bpb_test"] == pytest.approx(bits_per_byte(m["nll_test"] * n_tokens, test_lines))
        evaluator = SampleEvaluator(DataConfig(dataset=str(train), test_file=str(test)).load(), words,
                                    references="test")
        assert m["bleu4"] == pytest.approx(evaluator.score(rows[name]["samples"])["bleu4"])
    report = (tmp_path / "runs" / "mix" / "report" / "report.md").read_text(encoding="utf-8")
    assert "tokens (vocab)" in report and "bits/byte (test)" in report
