"""report.md states what each row scores, on which split, and what to distrust (experiments/report.py).

A hand-built results dict with the structure experiments.compare writes (see
research/compare-numbers/results.json), three rows and a few samples; its run directories
do not exist, so the learning-curve figure is empty and the report says so.
"""

import copy

import pytest

from experiments.reporting.comparison import write_report

from experiments.scoring.metrics import DEFAULT_NS as NS  # noqa: E402


def metrics(base: float, **extra) -> dict:
    m = {f"bleu{n}": base - 0.1 * n for n in NS} | {f"self_bleu{n}": base - 0.1 * n for n in NS}
    return m | {"distinct1": 0.1, "distinct2": 0.3, "unique_share": 1.0, "length_mean": 4.0, "length_tv": 0.05} | extra


def sweep(nll: float) -> list[dict]:
    return [{"temperature": t, "psi": 1.0, "bleu5": 0.3, "self_bleu5": 0.3, "nll_test": nll} for t in (0.7, 1.0)]


@pytest.fixture
def old_results(tmp_path) -> dict:
    """The structure of a results.json written before the caption keys existed."""
    samples = ["a cat sits on a mat .", "two dogs run in a park .", "a man rides a bike ."]
    missing = str(tmp_path / "runs" / "does-not-exist")
    return {
        "experiment": "captions", "dataset": "coco", "command": "python -m experiments.compare --dataset coco",
        "config": {"max_steps": 1500, "max_minutes": 0.0, "seed": 1337, "num_samples": 3, "temperature": 1.0,
                   "sample_seed": 0, "n_show": 2},
        "runs_dir": str(tmp_path / "runs"), "device": "cpu", "threads": 1, "wall_seconds": 60.0, "reused": [],
        "rows": [
            {"label": "real data", "family": "data", "kind": "real", "run_dir": missing, "params": None,
             "steps": None, "train_seconds": None, "samples": samples, "metrics": metrics(0.9), "sweep": []},
            {"label": "gpt2", "family": "lm", "kind": "model", "run_dir": missing, "params": 1000, "steps": 1500,
             "train_seconds": 10.0, "samples": samples[::-1],
             "metrics": metrics(0.85, nll_test=1.4321, nll_test_with_pad=1.2), "sweep": sweep(1.4321)},
            {"label": "gan", "family": "gan", "kind": "model", "run_dir": missing, "params": 2000, "steps": 1500,
             "train_seconds": 20.0, "samples": samples[:2],
             "metrics": metrics(0.95, nll_test=1.4612, nll_test_with_pad=1.3), "sweep": sweep(1.4612)},
        ],
    }


@pytest.fixture
def new_results(old_results) -> dict:
    results = copy.deepcopy(old_results)
    results["splits"] = {"train": "image_coco.txt (9,000 lines)", "val": "image_coco.txt (1,000 lines carved, seeded)",
                         "test": "image_coco_test.txt (10,000 lines)", "bleu_references": "test",
                         "oov_val": 0.012, "oov_test": 0.015}
    real, gpt2, gan = results["rows"]
    real["scored"] = "3 training sentences drawn with seed 0"
    gpt2["scored"] = "best-on-validation checkpoint (step 1,250)"
    gan["scored"] = "EMA generator at the end of training (step 1,500); NLL-test is an upper bound, K = 8 latents"
    gan["metrics"]["nll_K"] = 8
    for r in results["rows"]:
        r["warnings"] = []
    gan["warnings"] = ["Self-BLEU-5 0.64 vs real data 0.53 (margin 0.10): diversity lost"]
    return results


def render(results: dict, path) -> str:
    return write_report(results, path).read_text()


def section(text: str, heading: str) -> str:
    """The body of a '## heading' section, up to the next one."""
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_scored_captions_under_the_tables(new_results, tmp_path):
    text = render(new_results, tmp_path / "report")
    results = section(text, "Results")
    assert "What each row scores:" in results
    assert "- **gpt2**: best-on-validation checkpoint (step 1,250)" in results
    assert ("- **gan**: EMA generator at the end of training (step 1,500); NLL-test is an upper bound, "
            "K = 8 latents") in results
    assert "- **real data**: 3 training sentences drawn with seed 0" in results
    assert results.index("| gan |") < results.index("What each row scores:")  # under the tables


def test_latent_nll_carries_its_bound_and_k(new_results, tmp_path):
    text = render(new_results, tmp_path / "report")
    gan_row = next(line for line in section(text, "Results").splitlines() if line.startswith("| gan |"))
    gpt2_row = next(line for line in section(text, "Results").splitlines() if line.startswith("| gpt2 |"))
    assert "≤ 1.461 (K=8)" in gan_row and "≤ 1.300 (K=8)" in gan_row  # NLL-test and the w/ pad figure
    assert "≤" not in gpt2_row and "1.432" in gpt2_row
    assert "upper bound" in section(text, "Results")
    sweep = section(text, "Temperature sweep")
    assert all("≤ 1.461 (K=8)" in line for line in sweep.splitlines() if line.startswith("| gan |"))
    assert not any("≤" in line for line in sweep.splitlines() if line.startswith("| gpt2 |"))


def test_warnings_section(new_results, tmp_path):
    text = render(new_results, tmp_path / "report")
    warnings = section(text, "Warnings")
    assert "- **gan**: Self-BLEU-5 0.64 vs real data 0.53 (margin 0.10): diversity lost" in warnings
    assert "gpt2" not in warnings and "real data**" not in warnings
    for r in new_results["rows"]:
        r["warnings"] = []
    clean = render(new_results, tmp_path / "clean")
    assert section(clean, "Warnings").strip() == "None."


def test_data_paragraph_names_every_split(new_results, tmp_path):
    text = render(new_results, tmp_path / "report")
    assert text.index("## Data") < text.index("## Results")
    data = section(text, "Data")
    for needle in ("training: image_coco.txt (9,000 lines)", "validation: image_coco.txt (1,000 lines carved, seeded)",
                   "test: image_coco_test.txt (10,000 lines)", "validation 1.20%, test 1.50%",
                   "NLL-test, NLL-test w/ pad, the sweep's NLL-test: the test split",
                   "each sample against every sentence of the test split", "among the samples",
                   "val/nll on the validation split", "eval/recall against the validation split"):
        assert needle in data, needle
    new_results["splits"]["eval_references"] = "test"
    assert "eval/recall against the test split" in section(render(new_results, tmp_path / "other"), "Data")


def test_results_without_the_new_keys_still_render(old_results, tmp_path):
    text = render(old_results, tmp_path / "report")
    assert "| gan |" in text and "## Samples" in text
    assert "## Warnings" not in text and "What each row scores" not in text and "≤" not in text
    data = section(text, "Data")
    assert "not recorded" in data and "each sample against every sentence of the test split" in data
    assert "eval/recall against the test split" in data  # written while the trainers scored eval/ on test
    # the run directories are gone: the curves figure is drawn empty, and the report says so
    assert (tmp_path / "report" / "learning_curves.png").is_file()
    assert "no TensorBoard events found for: gpt2, gan" in text
