"""The literature table: means and seed standard deviations by hand, and the command end to end
on a tiny comparison (two seeds, two models), its table read back against each seed's results."""

import json
import math

import pytest
from matplotlib.image import imread

from experiments import literature
from experiments.core.config import ConfigError
from experiments.reporting.literature import mean_std, summarize, table


def results(seed_values: dict) -> dict:
    """A comparison's results with given metric values: {label: {metric: value}}."""
    rows = [{"label": "real data", "kind": "real", "family": "data", "run_dir": None, "steps": None,
             "train_seconds": None, "metrics": {"nll_oracle": 5.75}}]
    rows += [{"label": label, "kind": "model", "family": "lm", "run_dir": None, "steps": 100,
              "train_seconds": 120.0, "metrics": m} for label, m in seed_values.items()]
    rows.append({"label": "published", "kind": "published", "metrics": {"nll_oracle": 9.0}})
    return {"rows": rows}


def test_mean_and_sample_standard_deviation_by_hand():
    assert mean_std([2.0]) == (2.0, 0.0)
    m, s = mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3)
    # sum of squares about the mean: (4/3)^2 + (1/3)^2 + (5/3)^2 = 42/9, over n - 1 = 2
    assert s == pytest.approx(math.sqrt(42 / 9 / 2))


def test_summary_over_seeds_keeps_each_value_and_leaves_published_rows_out():
    per_seed = [results({"a": {"nll_oracle": 9.0, "nll_test": 7.0}}),
                results({"a": {"nll_oracle": 9.2, "nll_test": None}}),
                results({"a": {"nll_oracle": 9.4, "nll_test": 7.4}})]
    rows = summarize(per_seed, ["nll_oracle", "nll_test"])
    assert [r["label"] for r in rows] == ["real data", "a"]
    a = rows[1]["metrics"]
    assert a["nll_oracle"]["values"] == [9.0, 9.2, 9.4]
    assert a["nll_oracle"]["mean"] == pytest.approx(9.2) and a["nll_oracle"]["std"] == pytest.approx(0.2)
    assert a["nll_test"]["values"] == [7.0, 7.4]  # a seed without the metric is not counted as 0
    assert rows[1]["train_minutes"] == [2.0, 2.0, 2.0]
    text = table(rows, ["nll_oracle", "nll_test"])
    assert "| **a** | 3 | 9.200 ± 0.200 | 7.200 ± 0.283 |" in text
    assert "| real data | 3 | 5.750 | - |" in text  # the same real draw every seed: no spread shown


def test_bad_literature_settings_are_refused():
    with pytest.raises(ConfigError, match="seeds"):
        literature.main(["--dataset", "numbers", "--models", "bigram", "--literature.seeds", "one"])
    with pytest.raises(ConfigError, match="two metrics"):
        literature.main(["--dataset", "numbers", "--models", "bigram", "--literature.axes", "bleu5"])


def test_the_command_runs_a_comparison_per_seed_and_tables_them(tmp_path):
    (tmp_path / "lit.toml").write_text('[published.paper]\nsource = "A. Author 2020, Table 3"\nbleu5 = 0.2\n')
    summary = literature.main([
        "--config", str(tmp_path / "lit.toml"), "--dataset", "numbers", "--models", "mlp", "--max_steps", "20", "--eval_interval", "10",
        "--eval_samples", "8", "--num_samples", "24", "--temperatures", "1.0", "--lm_score", "false",
        "--reverse_lm_score", "false", "--n_show", "2", "--out_dir", str(tmp_path / "runs"),
        "--literature.seeds", "3,4", "--literature.columns", "bleu5,self_bleu5,nll_test",
        "--literature.axes", "bleu5,self_bleu5", "--literature.curve_tag", "val/nll",
        "--literature.table_dir", str(tmp_path / "table")])
    per_seed = [json.loads((tmp_path / "runs" / f"literature-numbers-seed{s}" / "report" / "results.json").read_text())
                for s in (3, 4)]
    assert [r["config"]["seed"] for r in per_seed] == [3, 4]
    mlp = [next(r for r in res["rows"] if r["label"] == "mlp") for res in per_seed]
    values = [r["metrics"]["nll_test"] for r in mlp]
    assert values[0] != values[1]  # the seeds differ
    row = next(r for r in summary["rows"] if r["label"] == "mlp")
    assert row["metrics"]["nll_test"]["values"] == values
    assert row["metrics"]["nll_test"]["mean"] == pytest.approx(sum(values) / 2)
    text = (tmp_path / "table" / "report.md").read_text()
    m, s = mean_std(values)
    assert f"{m:.3f} ± {s:.3f}" in text and "| paper | published | 0.200 | - | - | - |" in text
    assert "- paper: A. Author 2020, Table 3" in text  # the source, under the table, never a metric column
    for png in ("scatter.png", "curves.png"):
        assert f"]({png})" in text and imread(tmp_path / "table" / png).ndim == 3
    saved = json.loads((tmp_path / "table" / "results.json").read_text())
    assert saved["seeds"] == [3, 4] and saved["experiments"] == ["literature-numbers-seed3", "literature-numbers-seed4"]


def test_a_published_row_without_a_source_is_refused(tmp_path):
    for body, match in (("bleu5 = 0.2\n", "published row 'paper' has no source: add source"),
                        ('source = "x"\nbleu5 = "0.2"\n', "bleu5 must be numbers")):
        (tmp_path / "lit.toml").write_text("[published.paper]\n" + body)
        with pytest.raises(ConfigError, match=match):
            literature.main(["--config", str(tmp_path / "lit.toml"), "--dataset", "numbers", "--models", "bigram"])


def test_every_committed_published_row_has_a_source():
    """Each [published."<row>"] of every committed config names where its figures come from."""
    import tomllib
    from pathlib import Path
    from experiments.studies.comparison import checked_published
    configs = sorted(Path(__file__).resolve().parents[1].glob("experiments/configs/**/*.toml"))
    rows = 0
    for path in configs:
        table = tomllib.loads(path.read_text()).get("published", {})
        checked_published(table)  # raises, naming the row, where a source is missing
        rows += len(table)
    assert rows >= 10  # the COCO and oracle tables, and the COCO comparison's MLE row
