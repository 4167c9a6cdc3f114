"""The frontier (experiments/studies/frontier.py, experiments/reporting/frontier.py): interpolation and the
dominance rule by hand, and the command end to end on tiny language models of `numbers`."""

import json

import pytest

from experiments.studies import frontier
from experiments.core.config import ConfigError
from experiments.reporting.frontier import aggregate, dominance, interpolate

pytestmark = pytest.mark.usefixtures("one_thread")  # discriminators trained in-process: no OpenMP spin-waits on a loaded machine


def entry(x, y, sx=0.0, sy=0.0, seeds=3):
    return {"self_bleu5": {"mean": x, "std": sx, "values": [x] * seeds},
            "bleu5": {"mean": y, "std": sy, "values": [y] * seeds}}


def test_interpolation_and_dominance_by_hand():
    curve = [entry(0.2, 0.10, sy=0.01), entry(0.4, 0.20, sy=0.03)]  # BLEU-5 rises with Self-BLEU-5
    assert interpolate(curve, "self_bleu5", "bleu5", 0.3) == pytest.approx((0.15, 0.02))
    assert interpolate(curve, "self_bleu5", "bleu5", 0.5) is None
    # at Self-BLEU-5 0.3 the curve gives 0.15 +- 0.02; a point with 0.25 +- 0.01: margin 0.10 > 2 sqrt(0.0005)
    got = dominance(entry(0.3, 0.25, sy=0.01), curve, "bleu5", "self_bleu5")
    assert got["verdict"] == "dominates" and got["margin"] == pytest.approx(0.10)
    assert got["sigma"] == pytest.approx(2 * (0.01 ** 2 + 0.02 ** 2) ** 0.5)
    assert dominance(entry(0.3, 0.17, sy=0.01), curve, "bleu5", "self_bleu5")["verdict"] == "within noise"
    assert dominance(entry(0.3, 0.05), curve, "bleu5", "self_bleu5")["verdict"] == "dominated"
    assert dominance(entry(0.9, 0.9), curve, "bleu5", "self_bleu5")["verdict"] == "outside the curve's range"
    # lower is better for the LM score: a lower LM score at equal reverse LM score dominates
    lm = [{"reverse_lm_score": {"mean": r, "std": 0.0, "values": [r, r]},
           "lm_score": {"mean": s, "std": 0.0, "values": [s, s]}} for r, s in ((3.0, 2.0), (4.0, 1.0))]
    point = {"reverse_lm_score": {"mean": 3.5, "std": 0.0, "values": [3.5, 3.5]},
             "lm_score": {"mean": 1.0, "std": 0.01, "values": [1.0, 1.0]}}
    assert dominance(point, lm, "lm_score", "reverse_lm_score")["margin"] == pytest.approx(0.5)


def test_where_the_curve_meets_a_diversity_twice_its_best_crossing_is_the_reference():
    curve = [entry(0.2, 0.10), entry(0.2, 0.30), entry(0.4, 0.40)]  # a saturated axis: two points at 0.2
    for i, e in enumerate(curve):
        e["value"] = i
    assert interpolate(curve, "self_bleu5", "bleu5", 0.2)[0] == pytest.approx(0.30)
    assert interpolate(curve, "self_bleu5", "bleu5", 0.3)[0] == pytest.approx(0.35)
    # a U-shaped diversity axis (the reverse LM score against temperature): knob order, not x order
    u = []
    for t, (rlm, lm) in zip((0.6, 0.8, 1.0, 1.2), ((5.4, 1.9), (4.9, 2.4), (4.75, 3.3), (4.8, 4.5))):
        u.append({"value": t, "reverse_lm_score": {"mean": rlm, "std": 0.0, "values": [rlm, rlm]},
                  "lm_score": {"mean": lm, "std": 0.0, "values": [lm, lm]}})
    # at 4.775 the curve passes twice: T 0.8-1.0 (LM score 3.15) and T 1.0-1.2 (3.90); lower is better
    assert interpolate(u, "reverse_lm_score", "lm_score", 4.775, direction=-1)[0] == pytest.approx(3.15)
    point = {"reverse_lm_score": {"mean": 4.775, "std": 0.0, "values": [4.775] * 2},
             "lm_score": {"mean": 3.45, "std": 0.01, "values": [3.45] * 2}}
    assert dominance(point, u, "lm_score", "reverse_lm_score")["verdict"] == "dominated"


def test_one_seed_gets_no_verdict():
    one = [entry(0.2, 0.1, seeds=1), entry(0.4, 0.2, seeds=1)]
    assert dominance(entry(0.3, 0.9, seeds=1), one, "bleu5", "self_bleu5")["verdict"] == "one seed: no test"


def test_aggregate_over_seeds():
    pts = [{"model": "m", "curve": "temperature", "knob": "T", "value": 1.0, "seed": s, "bleu5": b}
           for s, b in ((1, 0.2), (2, 0.4))]
    (e,) = aggregate(pts, ["bleu5", "self_bleu5"])
    assert e["seeds"] == [1, 2] and e["bleu5"]["mean"] == pytest.approx(0.3) and "self_bleu5" not in e
    assert e["bleu5"]["std"] == pytest.approx(0.1414, abs=1e-4)  # sample standard deviation


def test_a_point_whose_discriminator_never_learnt_gets_no_verdict():
    """Guided by a discriminator with no signal on one seed: marked, no verdict, not counted."""
    from experiments.reporting.frontier import NO_SIGNAL, dominance, verdict_counts
    ref = [{"model": "m", "curve": "temperature", "knob": "T", "value": v, "seed": s, "bleu5": b + s / 100,
            "self_bleu5": b} for v, b in ((0.8, 0.2), (1.0, 0.4)) for s in (1, 2)]
    guided = [{"model": "m", "curve": "SIR", "knob": "alpha", "value": 1.0, "seed": s, "bleu5": 0.9, "self_bleu5": 0.3,
               "signal": s == 1} for s in (1, 2)]
    agg = aggregate(ref + guided, ["bleu5", "self_bleu5"])
    sir = agg[-1]
    assert sir["no_signal_seeds"] == [2] and "no_signal_seeds" not in agg[0]
    assert dominance(sir, agg[:2], "bleu5", "self_bleu5")["verdict"] == NO_SIGNAL
    assert dominance({**sir, "no_signal_seeds": []}, agg[:2], "bleu5", "self_bleu5")["verdict"] == "dominates"
    summary = {"points": agg, "config": {"frontier": {"reference": "m:temperature", "planes": "bleu5:self_bleu5"}}}
    (plane,) = verdict_counts(summary)
    assert plane["counts"] == {NO_SIGNAL: 1} and plane["winners"] == [] and plane["own"] == {}


def tiny_frontier(tmp_path, *more):
    return frontier.main([
        "--dataset", "numbers", "--models", "bigram,mlp", "--max_steps", "30", "--num_samples", "60",
        "--lm_score", "false", "--reverse_lm_score", "false", "--out_dir", str(tmp_path / "runs"),
        "--experiment", "fr", "--frontier.seeds", "1,2", "--temperatures", "0.8,1.0", "--top_ps", "0.9",
        "--guided", "mlp", "--drs_gammas", "0", "--sir_alphas", "1", "--sir_m", "2", "--planes", "bleu5:self_bleu5",
        "--reference", "mlp:temperature", "--table_dir", str(tmp_path / "table"), "--guide.samples", "120",
        "--guide.val_samples", "20", "--guide.steps", "6", "--guide.eval_interval", "3", "--guide.n_layer", "1", "--guide.n_embd", "16", "--guide.n_head", "2", *more])


def test_the_command_end_to_end(tmp_path):
    summary = tiny_frontier(tmp_path)
    curves = {(e["model"], e["curve"], e["value"]) for e in summary["points"]}
    assert ("bigram", "top-p", 0.9) in curves and ("mlp", "DRS", 0.0) in curves and ("mlp", "SIR", 1.0) in curves
    assert not any(c[1] in ("DRS", "SIR") for c in curves if c[0] == "bigram")  # only the guided model
    assert all(e["seeds"] == [1, 2] for e in summary["points"])
    sir = next(e for e in summary["points"] if e["curve"] == "SIR")
    assert sir["cost"] == 2.0 and set(summary["guides"][1]["mlp"]["posthoc"]) >= {"val_accuracy", "val_ece"}
    md = (tmp_path / "table" / "report.md").read_text()
    assert "## Against mlp's temperature curve" in md and "plane_bleu5_self_bleu5.png" in md
    assert (tmp_path / "table" / "plane_bleu5_self_bleu5.png").is_file()
    assert json.loads((tmp_path / "table" / "results.json").read_text())["seeds"] == [1, 2]
    assert (tmp_path / "runs" / "fr-seed2" / "mlp").is_dir()


def test_reference_and_guided_models_must_be_in_the_comparison(tmp_path):
    with pytest.raises(ConfigError, match="not: gpt3"):
        frontier.main(["--models", "bigram", "--reference", "gpt3:temperature", "--guided", "bigram",
                       "--table_dir", str(tmp_path)])


def test_reuse_reads_the_stored_points_and_rescores_when_a_setting_changed(tmp_path, monkeypatch):
    """Seeds run as separate commands merge with --reuse true without sampling again; a changed
    sampling setting scores again (only the model it concerns)."""
    first = tiny_frontier(tmp_path)

    def no_scoring(*args, **kwargs):
        raise AssertionError("a reused model was scored again")
    monkeypatch.setattr(frontier.comparison.Judge, "score", no_scoring)
    again = tiny_frontier(tmp_path, "--reuse", "true")
    assert again["per_seed"] == first["per_seed"] and again["guides"] == first["guides"]

    scored, trained, train = [], [], frontier.train_guide
    monkeypatch.setattr(frontier.comparison.Judge, "score", lambda self, texts: scored.append(len(texts)) or {})
    monkeypatch.setattr(frontier, "train_guide", lambda *a, **k: trained.append(1) or train(*a, **k))
    tiny_frontier(tmp_path, "--reuse", "true", "--sir_m", "3")  # only the guided model's points depend on it
    assert len(scored) == 2 * 5  # mlp, per seed: 2 temperatures, top-p, DRS, SIR; bigram's points reused
    assert trained == []  # its discriminators were read from guide-posthoc/guide.pt: same settings and run
    again = tiny_frontier(tmp_path, "--reuse", "true", "--guide.steps", "9")
    assert len(trained) == 2 and again["guides"][1]["mlp"]["posthoc"]["steps"] == 9  # a guide setting: trained again
    for seed in (1, 2):  # the retrained discriminator's curve replaced the old one in TensorBoard
        folder = tmp_path / "runs" / f"fr-seed{seed}" / "mlp" / "guide-posthoc"
        assert len(list(folder.glob("events.*"))) == 1
        assert not (folder / frontier.PARTIAL_GUIDE_FILE).exists()  # the in-training state goes once D is stored


class StopCell(Exception):
    pass


def test_a_cell_stopped_midway_scores_only_the_rest(tmp_path, monkeypatch):
    """Each point is stored as it is scored (frontier_points.partial.json), a DRS point given up
    as well: a cell stopped after three points and a skip, run again, scores the rest only and
    ends with the points an unstopped cell has."""
    first = tiny_frontier(tmp_path)
    calls, stop_at, score = [], [4], frontier.comparison.Judge.score

    def stopping(self, texts):
        calls.append(1)
        if len(calls) in stop_at:
            raise StopCell("stopped midway")  # as a killed job: nothing past this
        return score(self, texts)
    monkeypatch.setattr(frontier.comparison.Judge, "score", stopping)
    changed = ["--reuse", "true", "--sir_m", "3", "--drs_gammas", "8", "--drs_max_cost", "1"]  # guided points
    with pytest.raises(Exception, match="stopped midway"):  # rescored; DRS at gamma 8 keeps too little: given up
        tiny_frontier(tmp_path, *changed)
    partial = tmp_path / "runs" / "fr-seed1" / "mlp" / frontier.PARTIAL_FILE
    assert [p["curve"] for p in json.loads(partial.read_text())["points"]] == ["temperature"] * 2 + ["top-p", "DRS"]
    calls.clear(), stop_at.clear()
    resumed = tiny_frontier(tmp_path, *changed)
    assert len(calls) == 1 + 4  # seed 1's SIR point, then seed 2's four (its DRS point given up again)
    assert not partial.exists()
    assert all(resumed["guides"][s]["mlp"]["posthoc"]["skipped"][0].startswith("DRS gamma 8") for s in (1, 2))
    text = (tmp_path / "table" / "report.md").read_text()
    assert "Guided points given up" in text  # the report says why DRS gamma 8 has no row
    assert "- seed 1, mlp: DRS gamma 8: discriminator rejection sampling kept" in text and "- seed 2, mlp: DRS gamma 8" in text
    unguided = [e for e in first["points"] if e["curve"] not in ("DRS", "SIR")]  # the settings changed guided ones
    assert [e for e in resumed["points"] if e["curve"] not in ("DRS", "SIR")] == unguided


def test_the_index_counts_verdicts_per_dataset_and_tests_guidance_against_its_own_model(tmp_path):
    from experiments.reporting.frontier import write_index

    def point(model, curve, value, x, y):
        return {"model": model, "curve": curve, "knob": "k", "value": value, "seeds": [1, 2],
                **{k: {"mean": v, "std": 0.001, "values": [v, v]} for k, v in (("self_bleu5", x), ("bleu5", y))}}
    points = [point("lm", "temperature", 1.0, 0.2, 0.10), point("lm", "temperature", 0.5, 0.4, 0.20),
              point("g", "temperature", 1.0, 0.2, 0.20), point("g", "temperature", 0.5, 0.4, 0.40),
              point("g", "SIR", 1.0, 0.3, 0.25)]  # above lm's curve (0.15 there), below g's own (0.30)
    summary = {"command": "python -m experiments.frontier", "date": "today", "seeds": [1, 2], "points": points,
               "config": {"frontier": {"title": "toy", "reference": "lm:temperature", "planes": "bleu5:self_bleu5"}}}
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "results.json").write_text(json.dumps(summary))
    md = write_index(tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "toy" / "results.json").read_text()) == summary  # read, never written
    assert "| BLEU-5 at equal Self-BLEU-5 | 3 | 0 | 0 | 0 |" in md  # g's two temperatures and its SIR point
    assert "g SIR k = 1 (+0.1000" in md and "[toy](toy/report.md)" in md
    assert "own model's temperature curve, BLEU-5 at equal Self-BLEU-5: dominated 1" in md
