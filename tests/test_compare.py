"""The comparison command end to end on a tiny setting: report, figures, TensorBoard runs."""

import json
from pathlib import Path

import pytest
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from datasets import DataConfig
from experiments import compare, report, train_lm
from experiments.generators import families
from experiments.studies import comparison
from experiments.core import config as cfglib
from experiments.core.config import ConfigError
from experiments.core.logger import RunLogger

REPO = Path(__file__).resolve().parent.parent
from experiments.scoring.metrics import DEFAULT_NS as NS  # noqa: E402
TINY = ["--experiment", "tiny", "--models", "bigram,gpt2", "--max_steps", "20", "--eval_interval", "10",
        "--eval_samples", "12", "--num_samples", "24", "--temperatures", "0.8,1.0", "--n_show", "3",
        "--scorer.steps", "10", "--scorer.val_interval", "5", "--scorer.n_layer", "1", "--scorer.n_embd", "16",
        "--models.gpt2.n_layer", "1", "--models.gpt2.n_embd", "16", "--models.gpt2.n_head", "2",
        "--models.gpt2.batch_size", "16", "--models.gpt2.warmup_steps", "5", "--models.gpt2.num_samples", "2"]


def run(root: Path, *extra):
    return compare.main(TINY + ["--out_dir", str(root / "runs"), "--report_dir", str(root / "research"), *extra])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return root, run(root)


def scalars(run_dir):
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def test_report_and_figures(tiny):
    root, results = tiny
    report_dir = root / "research" / "tiny"
    text = (report_dir / "report.md").read_text()
    for needle in ("| *real data* |", "| bigram |", "| gpt2 |", "BLEU-5", "Self-BLEU-5", "NLL-test",
                   "precision", "## Temperature sweep", "## Samples", "python -m experiments.compare"):
        assert needle in text
    pngs = ["learning_curves.png", "bleu.png", "quality_diversity.png", "lengths.png"]
    for name in pngs:
        assert f"]({name})" in text
        image = imread(report_dir / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    saved = json.loads((report_dir / "results.json").read_text())
    assert [r["label"] for r in saved["rows"]] == ["real data", "bigram", "gpt2"]
    gpt2 = saved["rows"][2]
    assert gpt2["steps"] == 20 and len(gpt2["samples"]) == 24
    assert [p["temperature"] for p in gpt2["sweep"]] == [0.8, 1.0]
    assert results["rows"][0]["metrics"]["precision"] == 1.0  # real number names are all valid


def test_nll_with_pad_counts_every_position_up_to_block_size(tiny):
    """nll_test_with_pad is the text-GAN figure: the NLL summed over the real targets of every
    test sequence (<eos> included; the pads after it predicted with probability 1, adding 0),
    divided by sequences x block_size; nll_test divides the same sum by the real targets."""
    import torch
    import torch.nn.functional as F

    from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID
    from experiments.generators.generation import load_model

    _, results = tiny
    corpus = compare.parse_args(TINY)[0].load()
    for row in results["rows"][1:]:  # bigram, gpt2
        model, tok = load_model(Path(row["run_dir"]) / "best.pt", "cpu")
        L, N = model.block_size, len(corpus.test)
        x = torch.full((N, L), PAD_ID)
        y = torch.full((N, L), PAD_ID)
        lengths = torch.zeros(N, dtype=torch.long)
        for i, line in enumerate(corpus.test):
            ids = tok.encode(line)
            x[i, :len(ids) + 1], y[i, :len(ids) + 1] = torch.tensor([BOS_ID] + ids), torch.tensor(ids + [EOS_ID])
            lengths[i] = len(ids) + 1
        with torch.no_grad():
            logits, _ = model(x)
        nll = -F.log_softmax(logits.double(), -1).gather(-1, y[..., None])[..., 0]  # (N, L)
        real = torch.arange(L)[None, :] < lengths[:, None]
        total = nll[real].sum().item()
        metrics = row["metrics"]
        assert metrics["nll_test"] == pytest.approx(total / real.sum().item(), rel=1e-5), row["label"]
        assert metrics["nll_test_with_pad"] == pytest.approx(total / (N * L), rel=1e-5), row["label"]
        assert metrics["nll_test_with_pad"] < metrics["nll_test"] * 0.99  # some positions are pads


def test_report_re_renders_from_results_json(tiny, capsys):
    root, _ = tiny
    report_dir = root / "research" / "tiny"
    before = (report_dir / "report.md").read_text()
    (report_dir / "lengths.png").unlink()
    report.main([str(report_dir / "results.json")])
    assert (report_dir / "report.md").read_text() == before
    assert imread(report_dir / "lengths.png").ndim == 3


def test_tensorboard_runs_read_back(tiny):
    root, _ = tiny
    runs = root / "runs" / "tiny"
    acc = scalars(runs / "gpt2")
    tags = set(acc.Tags()["scalars"])
    periodic = {f"eval/bleu{n}" for n in NS} | {f"eval/self_bleu{n}" for n in NS}
    periodic |= {"eval/distinct1", "eval/distinct2", "eval/unique_share", "eval/length_mean",
                 "eval/precision", "eval/novelty", "eval/recall"}
    assert {"train/loss", "val/nll"} | periodic <= tags
    assert [e.step for e in acc.Scalars("eval/bleu2")] == [10, 20]
    finals = {f"final/bleu{n}" for n in NS} | {f"final/self_bleu{n}" for n in NS}
    assert finals | {"final/nll_test", "final/lm_score", "final/reverse_lm_score"} <= tags
    assert "samples/compare/text_summary" in acc.Tags()["tensors"]
    assert finals <= set(scalars(runs / "real-data").Tags()["scalars"])
    # the experiment summary at the root sets the HPARAMS columns to the final metrics
    content = scalars(runs).PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = hparams_metadata.parse_experiment_plugin_data(content)
    assert {"final/bleu5", "final/self_bleu5", "final/nll_test"} <= {m.name.tag for m in experiment.metric_infos}


def test_reuse_loads_checkpoints_and_reproduces_the_scores(tiny):
    root, first = tiny
    ckpt = root / "runs" / "tiny" / "gpt2" / "best.pt"
    mtime = ckpt.stat().st_mtime_ns
    again = run(root, "--reuse", "true")
    assert ckpt.stat().st_mtime_ns == mtime  # loaded, not retrained
    for a, b in zip(first["rows"], again["rows"]):
        assert a["samples"] == b["samples"]  # seeded sampling
        for k in ("bleu5", "self_bleu5", "lm_score", "reverse_lm_score", "precision"):
            assert a["metrics"][k] == b["metrics"][k]
    # one file of comparison events per run: a re-run replaces it
    assert len(list((root / "runs" / "tiny" / "gpt2").glob("events.out.tfevents.*.compare"))) == 1


def test_a_finished_run_moved_to_another_experiment_is_reused(tiny):
    """Comparisons split over processes (one experiment name each) merge by moving run folders."""
    import shutil
    root, first = tiny
    shutil.copytree(root / "runs" / "tiny" / "gpt2", root / "runs" / "moved" / "gpt2")
    ckpt = root / "runs" / "moved" / "gpt2" / "best.pt"
    mtime = ckpt.stat().st_mtime_ns
    again = run(root, "--experiment", "moved", "--models", "gpt2", "--reuse", "true")
    assert ckpt.stat().st_mtime_ns == mtime and again["reused"] == ["gpt2"]
    assert again["rows"][1]["samples"] == first["rows"][2]["samples"]


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "configs" / "compare").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_compare_configs_resolve(path):
    cfg, _, entries, _ = compare.parse_args(["--config", str(path)])
    assert entries
    for name, family, settings in entries:
        assert family in families.FAMILIES
        if family == "lm":  # every per-model setting is one the trainer knows
            train_lm.parse_args(comparison.trainer_argv(cfg, Path("runs/x"), name, settings))


def test_unknown_entries_fail_loudly():
    with pytest.raises(ConfigError, match="not a model"):
        compare.parse_args(["--models", "gpt3"])
    with pytest.raises(ConfigError, match="unknown family"):
        compare.parse_args(["--models", "x", "--models.x.family", "vae"])


class FakeSampler:
    info = {"params": 1, "steps": 2, "train_seconds": 0.0}

    def sample(self, n, temperature=1.0, psi=1.0, seed=0):
        base = ["one", "two", "three hundred", "four thousand five"]
        return [base[(i + int(10 * psi)) % len(base)] for i in range(n)]

    def nll(self, split, temperature=1.0, psi=1.0):
        return {"nll": 1.0 / psi, "nll_with_pad": 0.5 / psi}


class FakeFamily:
    """What the GAN family plugs in: config(argv), train(argv) -> run_dir, is_trained, vocabulary, load -> sampler."""

    sweeps_psi = True

    def config(self, argv):  # the data settings it was handed, as its trainer would resolve them
        pairs = [tuple(a[2:].split("=", 1)) for a in argv]
        known = set(DataConfig().data_settings()) | {"data_dir"}
        return {"train": cfglib.resolve({"data": DataConfig()}, {}, [(k, v) for k, v in pairs if k in known])["data"]}

    def train(self, argv):
        settings = dict(a[2:].split("=", 1) for a in argv)
        run_dir = Path(settings["out_dir"]) / settings["run_name"]
        log = RunLogger(run_dir)
        for step in (1, 2):
            log.scalars({"val/nll": 2.0 / step, "eval/bleu5": 0.1 * step}, step)
        log.close()
        (run_dir / "metrics.json").write_text("{}")
        return run_dir

    def is_trained(self, run_dir):
        return (run_dir / "metrics.json").is_file()

    def load(self, run_dir, corpus, device):
        return FakeSampler()


def test_a_new_family_plugs_in_with_its_psi_sweep(tmp_path, monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "fake", FakeFamily())
    results = compare.main(["--experiment", "f", "--models", "fake", "--num_samples", "8", "--lm_score", "false",
                            "--reverse_lm_score", "false", "--temperatures", "1.0", "--psis", "0.5,1.0",
                            "--out_dir", str(tmp_path / "runs"), "--report_dir", str(tmp_path / "research")])
    row = results["rows"][1]
    assert row["family"] == "fake" and row["steps"] == 2
    assert [(p["temperature"], p["psi"]) for p in row["sweep"]] == [(1.0, 1.0), (1.0, 0.5)]
    assert row["sweep"][1]["nll_test"] == 2.0
    assert imread(tmp_path / "research" / "f" / "quality_diversity.png").ndim == 3
    assert "final/bleu5" in scalars(tmp_path / "runs" / "f" / "fake").Tags()["scalars"]


@pytest.mark.parametrize("use,psi_rows", [(2e-7, False), (0.15, True), (None, True)])
def test_truncation_rows_only_for_a_latent_that_is_used(tmp_path, monkeypatch, use, psi_rows):
    """A latent generator that ignores z (latent use below min_latent_use) gets no psi rows, which
    could only repeat its psi = 1 row, and the report says why; one that uses z (or that does not
    report its use) gets them."""
    sampler = FakeSampler()
    sampler.info = {**FakeSampler.info, "latent_mi": use}
    family = FakeFamily()
    family.load = lambda run_dir, corpus, device: sampler
    monkeypatch.setitem(families.FAMILIES, "fake", family)
    results = compare.main(["--experiment", "f", "--models", "fake", "--num_samples", "8", "--lm_score", "false",
                            "--reverse_lm_score", "false", "--temperatures", "1.0", "--psis", "0.5,0.9",
                            "--out_dir", str(tmp_path / "runs"), "--report_dir", str(tmp_path / "research")])
    row = results["rows"][1]
    assert [p["psi"] for p in row["sweep"]] == ([1.0, 0.5, 0.9] if psi_rows else [1.0])
    report = (tmp_path / "research" / "f" / "report.md").read_text()
    assert ("truncation rows omitted: latent use 2.0e-07" in report) == (not psi_rows)
    assert bool(row["sweep_note"]) == (not psi_rows)


def test_the_judge_is_planned_timed_and_cached(tiny, capsys):
    """The plan is printed before training, the report has the time table, and a second comparison on
    the same corpus reuses the cached scorer LM and the real-data reverse LM score, exactly."""
    root, first = tiny
    assert first["judge"]["unit"] == "bits per byte" and first["judge"]["scorer_reused"] is False
    assert first["judge"]["estimate_seconds"] > 0 and "judge: scorer LMs are GPT-2 1 x 16" in first["judge"]["text"]
    text = (root / "research" / "tiny" / "report.md").read_text()
    assert "## Time" in text and "Judge in all (scorer LMs, sample metrics, sweeps)" in text
    assert "bits per byte" in text
    for row in first["rows"]:
        assert {"sample_metrics", "lm_score", "reverse_lm"} <= set(row["timing"])
    cached = list((root / "runs" / "judge-cache").glob("*/scorer.pt"))
    assert len(cached) == 1 and (cached[0].parent / "real_reverse_lm.json").is_file()
    capsys.readouterr()
    again = run(root, "--reuse", "true", "--experiment", "tiny-again")
    out = capsys.readouterr().out
    assert "reused cached scorer" in out and "reused cached real-data reverse LM score" in out
    assert again["judge"]["scorer_reused"] is True
    for a, b in zip(first["rows"], again["rows"]):
        assert a["metrics"]["lm_score"] == b["metrics"]["lm_score"]
        assert a["metrics"]["reverse_lm_score"] == b["metrics"]["reverse_lm_score"]
    run(root, "--reuse", "true", "--experiment", "tiny-other", "--num_samples", "20")  # other real-data lines
    assert len(list((root / "runs" / "judge-cache").glob("*/scorer.pt"))) == 2


def test_the_judge_cache_key_follows_what_decides_the_scorer():
    from datasets.corpora import Corpus
    from experiments.scoring.judge import cache_key
    from experiments.scoring.lm_score import ScorerConfig
    cfg = comparison.CompareConfig()
    corpus = Corpus("c", "word", "sequence", ["a b", "b c"], ["a"], ["c"])
    key = cache_key(cfg, ScorerConfig(), corpus, "cpu")
    assert key == cache_key(cfg, ScorerConfig(), Corpus("c", "word", "sequence", ["a b", "b c"], ["a"], ["c"]), "cpu")
    assert key != cache_key(cfg, ScorerConfig(), Corpus("c", "word", "sequence", ["a b", "b d"], ["a"], ["c"]), "cpu")
    assert key != cache_key(cfg, ScorerConfig(steps=7), corpus, "cpu")
    assert key != cache_key(comparison.CompareConfig(sample_seed=3), ScorerConfig(), corpus, "cpu")
    assert key != cache_key(comparison.CompareConfig(lowercase=True), ScorerConfig(), corpus, "cpu")
