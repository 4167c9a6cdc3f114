"""Your own corpus, end to end: a word-level sentence file with its own val and test files,
odd bytes and one overlong line, through the data layer, every trainer, compare and score.

The corpus is written by the tests themselves (not designed with the code): mixed case, a
byte-order mark, a control character, one 300-word line, test words never seen in training.
"""

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from datasets import CorpusError, DataConfig, LMData, build_tokenizer
from datasets.corpora import read_text
from datasets.tokenizers import UNK_ID, WordTokenizer
from experiments import compare, score, train_gan, train_lm
from experiments.core.checkpoint import CheckpointError
from experiments.compare import CompareConfig
from experiments.core.config import ConfigError
from experiments.scoring.samples import collapse_warnings
from experiments.train_gan import GANTrainConfig
from experiments.train_lm import TrainConfig

REPO = Path(__file__).resolve().parent.parent
WORDS = ("The cat sat on the mat while a Dog barked at the moon and Birds sang in trees near "
         "the river bank , then it rained .").split()


def sentence(rng, lo=3, hi=12):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    """train.txt (BOM, a BEL inside a line, one 300-word line at line 41), val.txt, test.txt."""
    root = tmp_path_factory.mktemp("own")
    rng = random.Random(7)
    train = [sentence(rng) for _ in range(240)]
    train[7] = train[7] + " \x07ding"
    train[40] = " ".join(rng.choice(WORDS) for _ in range(300))
    (root / "train.txt").write_text("\ufeff" + "\n".join(train) + "\n", encoding="utf-8")
    (root / "val.txt").write_text("\n".join(sentence(rng) for _ in range(30)) + "\n", encoding="utf-8")
    test = [sentence(rng) for _ in range(40)] + ["a Zebra and an Okapi grazed"]  # words never seen in train
    (root / "test.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    return root


def data_cfg(root, **kw):
    return DataConfig(dataset=str(root / "train.txt"), val_file=str(root / "val.txt"),
                      test_file=str(root / "test.txt"), **kw)


# ---------------------------------------------------------------- data layer

def test_bom_and_control_characters_are_removed_and_counted_once(corpus_files, tmp_path, capsys):
    own = tmp_path / "own.txt"  # a path no other test has read: the note is said once per process
    own.write_bytes((corpus_files / "train.txt").read_bytes())
    text = read_text(own)
    assert "\ufeff" not in text and "\x07" not in text and " ding" in text
    assert read_text(own) == text  # read again, as each cell of a grid does
    assert capsys.readouterr().err.count("removed 1 byte-order mark (U+FEFF) and 1 control character (U+0007 x1)") == 1
    tok = build_tokenizer(data_cfg(corpus_files, max_len=40).load())
    assert not [s for s in tok.itos if any(ord(c) < 32 or c == "\ufeff" for c in s)]


def test_own_files_are_the_splits(corpus_files):
    c = data_cfg(corpus_files, max_len=40).load()
    assert c.level == "word" and c.mode == "sequence"  # the documented default for a file
    assert c.test == (corpus_files / "test.txt").read_text().splitlines()
    assert c.val == (corpus_files / "val.txt").read_text().splitlines()
    assert len(c.train) == 239  # all of train.txt but the overlong line
    # without a val file, val is carved from the training file (5%, seeded, the same every time)
    c2 = DataConfig(dataset=str(corpus_files / "train.txt"), test_file=str(corpus_files / "test.txt"), max_len=40).load()
    assert len(c2.val) == 12 and len(c2.train) == 240 - 12 - 1 and not set(c2.val) - set(c.train)
    again = DataConfig(dataset=str(corpus_files / "train.txt"), test_file=str(corpus_files / "test.txt"),
                       max_len=40).load()
    assert (again.train, again.val) == (c2.train, c2.val)


def test_an_overlong_line_is_refused_with_its_line_number_and_the_fixes(corpus_files):
    c = data_cfg(corpus_files).load()
    with pytest.raises(CorpusError, match=r"train\.txt, line 41 \(train split\) has 300 word-level tokens.*"
                                          r"--max_len 64 \(1 example longer\).*--block_size 301"):
        LMData(c, build_tokenizer(c))
    LMData(c, build_tokenizer(c), block_size=301)  # an explicit block_size keeps it


def test_max_len_drops_longer_examples_and_says_how_many(corpus_files, capsys):
    c = data_cfg(corpus_files, max_len=40).load()
    assert "max_len 40: dropped 1 of 240 train examples" in capsys.readouterr().err
    assert LMData(c, build_tokenizer(c)).block_size == 13  # 12 words + <eos>: the data's longest, not the outlier's


def test_auto_block_size_has_a_hard_cap():
    from datasets.batching import MAX_AUTO_BLOCK, check_lengths
    from datasets.corpora import Corpus
    c = Corpus("c", "char", "sequence", ["x"] * 3, ["x"], ["x"])
    with pytest.raises(CorpusError, match=f"refused above {MAX_AUTO_BLOCK:,} tokens"):
        check_lengths(c, {"train": [1000] * 3000 + [2100], "val": [5], "test": [5]})


def test_word_vocabulary_options(corpus_files):
    base = build_tokenizer(data_cfg(corpus_files, max_len=40).load())
    assert "The" in base.stoi and "the" in base.stoi  # case kept by default
    low = build_tokenizer(data_cfg(corpus_files, max_len=40, lowercase=True).load())
    assert "The" not in low.stoi and "dog" in low.stoi
    assert low.vocab_size == base.vocab_size - 1  # only The has a lowercase twin (the) to merge with
    rare = build_tokenizer(data_cfg(corpus_files, max_len=40, min_freq=2).load())
    assert "ding" not in rare.stoi and rare.encode("ding") == [UNK_ID]  # seen once
    top = build_tokenizer(data_cfg(corpus_files, max_len=40, max_vocab=5).load())
    assert top.vocab_size == 4 + 5 and "the" in top.stoi  # the most frequent word is kept
    counts = WordTokenizer.fit(["a a b b c"], max_vocab=2)  # ties broken by sort order: deterministic
    assert counts.itos[4:] == ["a", "b"]


def test_oov_rates_are_measured(corpus_files):
    c = data_cfg(corpus_files, max_len=40).load()
    data = LMData(c, build_tokenizer(c))
    assert data.oov["val"] == 0.0
    # Zebra, an, Okapi, grazed: the four test words never seen in training
    assert data.oov["test"] == pytest.approx(4 / sum(len(t.split()) for t in c.test))
    assert "out-of-vocabulary val 0.0%" in data.oov_summary()


def test_one_level_default_everywhere():
    assert TrainConfig().level == GANTrainConfig().level == CompareConfig().level == DataConfig().level == ""
    assert TrainConfig().mode == GANTrainConfig().mode == CompareConfig().mode == ""


def test_a_missing_file_that_looks_like_a_path_is_a_missing_file():
    with pytest.raises(CorpusError, match="corpus file my_corpus.text does not exist"):
        DataConfig(dataset="my_corpus.text").load()
    with pytest.raises(CorpusError, match="val_file nowhere/val.txt does not exist"):
        DataConfig(dataset=str(REPO / "README.md"), val_file="nowhere/val.txt").load()
    with pytest.raises(CorpusError, match="unknown dataset 'nambers'.*did you mean 'numbers'"):
        DataConfig(dataset="nambers").load()


# ---------------------------------------------------------------- command line

def cli(*argv):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_textduel_errors_are_one_message_and_exit_status_2(tmp_path):
    r = cli("experiments.train_lm", "--dataset", "no/such/corpus.txt", "--out_dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: corpus file no/such/corpus.txt does not exist")
    r = cli("experiments.compare", "--models", "gpt2", "--levle", "word")
    assert r.returncode == 2 and "unknown setting 'levle'; did you mean level" in r.stderr
    r = cli("experiments.train_gan", "--dataset", "no/such/corpus.txt", "--debug", "true")
    assert r.returncode == 1 and "Traceback" in r.stderr and "CorpusError" in r.stderr


# ---------------------------------------------------------------- compare, score

GPT = ["--models.gpt2.n_layer", "1", "--models.gpt2.n_embd", "16", "--models.gpt2.n_head", "2",
       "--models.gpt2.batch_size", "16", "--models.gpt2.warmup_steps", "5"]
LSTM = ["--models.lstm.n_embd", "8", "--models.lstm.n_embd2", "16", "--models.lstm.batch_size", "16"]
GAN = ["--models.gan.generator.n_layer", "1", "--models.gan.generator.n_out_layers", "1",
       "--models.gan.generator.n_head", "2", "--models.gan.generator.n_embd", "16", "--models.gan.noise_dim", "4",
       "--models.gan.n_style_tokens", "2", "--models.gan.z_dim", "8", "--models.gan.w_dim", "8",
       "--models.gan.n_mlp", "2", "--models.gan.discriminator.n_layer", "1", "--models.gan.discriminator.n_head", "2",
       "--models.gan.discriminator.n_embd", "16", "--models.gan.batch_size", "8", "--models.gan.pretrain_steps", "20",
       "--models.gan.adv_steps", "10", "--models.gan.final_samples", "16", "--models.gan.eval_batch_size", "256"]


def own_compare(root, tmp, *extra):
    return compare.main(["--dataset", str(root / "train.txt"), "--val_file", str(root / "val.txt"),
                         "--test_file", str(root / "test.txt"), "--max_len", "40", "--models", "gpt2,lstm,gan",
                         "--experiment", "mine", "--out_dir", str(tmp / "runs"), "--max_steps", "30",
                         "--eval_interval", "15", "--eval_samples", "8", "--num_samples", "24",
                         "--temperatures", "1.0", "--psis", "0.7", "--n_show", "3", "--scorer.steps", "10",
                         "--scorer.val_interval", "5", "--scorer.n_layer", "1", "--scorer.n_embd", "16",
                         *GPT, *LSTM, *GAN, *extra])


@pytest.fixture(scope="module")
def compared(corpus_files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    return own_compare(corpus_files, tmp), tmp


def test_compare_on_your_own_word_level_files(compared, corpus_files):
    results, tmp = compared
    report_dir = tmp / "runs" / "mine" / "report"  # an ad-hoc comparison writes under runs/, not into the repo
    text = (report_dir / "report.md").read_text()
    assert json.loads((report_dir / "results.json").read_text())["splits"]["test"].startswith(str(corpus_files))
    assert [r["label"] for r in results["rows"]] == ["real data", "gpt2", "lstm", "gan"]
    # BLEU references are exactly the test file's lines: each row's BLEU-4 equals nltk's against them
    # (words and punctuation are space-separated in this corpus, so str.split is the tokenizer's split)
    refs = [line.split() for line in (corpus_files / "test.txt").read_text().splitlines()]
    for row in results["rows"]:
        want = sum(sentence_bleu(refs, h.split(), (0.25,) * 4, smoothing_function=SmoothingFunction().method1)
                   for h in row["samples"]) / len(row["samples"])
        assert row["metrics"]["bleu4"] == pytest.approx(want, abs=1e-12)
    # captions say what each row scores, with the GAN's K
    assert "best-on-validation checkpoint (best.pt" in text and "EMA generator at the end of training" in text
    assert "K = 1" in text and "## Data" in text
    gan = results["rows"][3]
    assert "warnings" in gan and isinstance(json.loads((Path(gan["run_dir"]) / "metrics.json").read_text())
                                            ["warnings"], list)
    for row in results["rows"][1:]:  # every trainer measured the OOV rates of your files
        m = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert m["data/oov_test"] > 0 and m["data/oov_val"] == 0.0


def test_a_per_model_data_setting_fails_at_once(corpus_files, tmp_path):
    t0 = time.time()
    with pytest.raises(ConfigError, match="entry 'lstm' sets lowercase: data settings belong to the whole comparison"):
        own_compare(corpus_files, tmp_path, "--models.lstm.lowercase", "true")
    # a level of its own is allowed (tests/test_bpe_level.py), but not with max_len, which counts tokens
    with pytest.raises(ConfigError, match="entry 'lstm' reads the text in its own tokens, but max_len 40 counts"):
        own_compare(corpus_files, tmp_path, "--models.lstm.level", "char")
    assert time.time() - t0 < 5 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, match", [
    (("--max_len", "0"), r"train\.txt, line 41 \(train split\) has 300 word-level tokens.*--max_len 64"),
    (("--models.gpt2.block_size", "8"), r"entry 'gpt2': the longest .* block_size >= 13, but block_size = 8"),
    (("--min_freq", "100000"), "leaves no symbol in the vocabulary"),
])
def test_bad_data_or_settings_are_refused_before_the_judge_or_any_trainer(corpus_files, tmp_path, monkeypatch,
                                                                         extra, match):
    """Preflight: an overlong line (no --max_len), a block size an entry's examples do not fit, an
    empty vocabulary: each refused with its message before the scorer LMs or any family's trainer
    is entered (they are patched to raise here)."""
    from experiments.generators.families import FAMILIES
    from experiments.scoring import judge, lm_score
    entered = []

    def refuse(what):
        def f(*args, **kwargs):
            entered.append(what)
            raise AssertionError(f"{what} entered before preflight refused")
        return f

    monkeypatch.setattr(lm_score, "fit_gpt2", refuse("scorer fit"))
    monkeypatch.setattr(judge, "probe_fit", refuse("judge probe"))
    for name, family in FAMILIES.items():
        monkeypatch.setattr(family, "train", refuse(f"{name} train"))
    with pytest.raises(CorpusError, match=match):
        own_compare(corpus_files, tmp_path, *extra)
    assert entered == [] and not (tmp_path / "runs" / "mine").exists()


def test_reusing_a_run_of_another_vocabulary_fails_before_training(compared, corpus_files):
    _, tmp = compared
    before = {p: p.stat().st_mtime for p in (tmp / "runs" / "mine").rglob("*") if p.is_file()}
    t0 = time.time()
    with pytest.raises(CheckpointError, match=r"mine/gpt2 was trained with other settings than this comparison asks "
                                              r"for \(train.lowercase False -> True\).*without --reuse true"):
        own_compare(corpus_files, tmp, "--reuse", "true", "--lowercase", "true")
    assert time.time() - t0 < 5
    assert before == {p: p.stat().st_mtime for p in (tmp / "runs" / "mine").rglob("*") if p.is_file()}


def test_score_reproduces_the_comparison(compared, corpus_files, tmp_path):
    results, _ = compared
    gpt2 = results["rows"][1]
    samples = tmp_path / "samples.txt"
    samples.write_text("\n".join(gpt2["samples"]) + "\n")
    figures = score.main(["--samples", str(samples), "--references", str(corpus_files / "test.txt"),
                          "--ckpt", str(Path(gpt2["run_dir"]) / "best.pt")])
    for k in ("bleu2", "bleu5", "self_bleu3", "distinct2", "unique_share"):
        assert figures[k] == gpt2["metrics"][k]
    assert figures["nll"] == pytest.approx(gpt2["metrics"]["nll_test"], rel=1e-6)


# ---------------------------------------------------------------- budgets and collapse

@pytest.mark.parametrize("trainer", ["lm", "gan"])
def test_max_minutes_bounds_the_whole_run_scoring_included(corpus_files, tmp_path, trainer):
    minutes = 0.5  # room for the final scoring's reserve on a loaded machine (it refuses budgets the reserve eats)
    common = ["--dataset", str(corpus_files / "train.txt"), "--test_file", str(corpus_files / "test.txt"),
              "--max_len", "40", "--out_dir", str(tmp_path), "--progress", "false", "--max_minutes", str(minutes)]
    t0 = time.time()
    if trainer == "lm":
        m = train_lm.main(common + ["--max_steps", "100000", "--eval_interval", "1000", "--eval_samples", "200",
                                    "--num_samples", "100"])
    else:  # an under-trained generator: every sample runs to full length
        m = train_gan.main(common + ["--pretrain_steps", "100000", "--adv_steps", "0", "--eval_interval", "100000",
                                     "--final_samples", "300", "--eval_samples", "100"])
    took = time.time() - t0
    assert took <= 1.1 * minutes * 60, f"{took:.1f} s for a {minutes} min budget"
    assert m["steps"] > 0


def test_a_budget_that_scoring_alone_would_eat_is_refused_up_front(corpus_files, tmp_path):
    t0 = time.time()
    with pytest.raises(ConfigError, match="leaves no time to train.*final scoring"):
        train_gan.main(["--dataset", str(corpus_files / "train.txt"), "--max_len", "40", "--out_dir", str(tmp_path),
                        "--max_minutes", "0.001", "--progress", "false"])
    assert time.time() - t0 < 30


def test_a_comparison_refuses_an_entry_budget_before_any_entry_trains(corpus_files, tmp_path, monkeypatch):
    """The GAN's final scoring (its samples run to full length untrained) eats a budget the LMs can
    keep: the comparison refuses it, naming the entry and the fix, before the judge or any trainer
    starts, and leaves no run behind (each entry is built in a scratch folder to be measured)."""
    from experiments.generators.families import FAMILIES
    from experiments.scoring import lm_score
    entered = []
    monkeypatch.setattr(lm_score, "fit_gpt2", lambda *a, **k: entered.append("scorer fit"))
    for name, family in FAMILIES.items():
        monkeypatch.setattr(family, "train", lambda *a, name=name, **k: entered.append(f"{name} train"))
    with pytest.raises(ConfigError, match=r"entry 'gan': max_minutes 0.05 leaves no time to train: .* final scoring "
                                          r".*--models\.gan\.max_minutes"):
        own_compare(corpus_files, tmp_path, "--max_minutes", "0.05", "--models.gpt2.max_minutes", "0",
                    "--models.lstm.max_minutes", "0", "--models.gan.final_samples", "2000")
    assert entered == [] and not (tmp_path / "runs" / "mine").exists()


def test_collapse_warnings_fire_on_the_reported_case():
    """The word-list GAN of the report: Self-BLEU-5 0.53 -> 0.64, 87 % distinct, val NLL 2.10 -> 2.85;
    the real word list is all distinct. The old rule (under 50 % distinct) said nothing."""
    real = {"self_bleu5": 0.53, "unique_share": 1.0}
    found = collapse_warnings({"self_bleu5": 0.64, "unique_share": 0.87}, real, nll_rise=2.85 / 2.10 - 1)
    assert len(found) == 3
    assert "Self-BLEU-5 0.640 vs real data 0.530" in found[0] and "87.0% vs real data 100.0%" in found[1]
    assert "rose 36%" in found[2]
    assert collapse_warnings({"self_bleu5": 0.60, "unique_share": 0.95}, real, nll_rise=0.05) == []


def test_score_reproduces_the_committed_coco_report_exactly(data_dir, tmp_path):
    """COCO as a user would give it (image_coco.txt as the dataset, image_coco_test.txt as --test_file):
    `score` on the samples stored in the committed report gives its figures to the last bit."""
    train, test = Path(data_dir) / "image_coco.txt", Path(data_dir) / "image_coco_test.txt"
    assert DataConfig(dataset=str(train), test_file=str(test), lowercase=True).load().test == \
        DataConfig(dataset="coco", data_dir=data_dir).load().test
    committed = json.loads((REPO / "research" / "coco_mle" / "results.json").read_text())
    rows = [r for r in committed["rows"] if r["samples"]]  # the real captions and GPT-2's samples, 2,000 each
    assert len(rows) == 2
    for row in rows:
        samples = tmp_path / "samples.txt"
        samples.write_text("\n".join(row["samples"]) + "\n")
        figures = score.main(["--samples", str(samples), "--references", str(test), "--lowercase", "true"])
        for k in ("bleu2", "bleu3", "bleu4", "bleu5", "self_bleu2", "self_bleu5", "distinct2", "length_tv"):
            assert figures[k] == row["metrics"][k], k


def test_level_and_mode_apply_to_named_corpora_too():
    c = DataConfig(dataset="numbers", level="char").load()
    assert c.level == "char" and set(build_tokenizer(c).itos[4:]) <= set("abcdefghijklmnopqrstuvwxyz ")
    s = DataConfig(dataset="numbers", mode="stream").load()
    assert s.mode == "stream" and s.test == "\n".join(DataConfig(dataset="numbers").load().test) + "\n"
    with pytest.raises(CorpusError, match="fixed word-level vocabulary"):
        DataConfig(dataset="oracle", level="char").load()
    with pytest.raises(CorpusError, match="named corpus with fixed splits"):
        DataConfig(dataset="numbers", test_file="mine.txt").load()
