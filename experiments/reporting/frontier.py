"""The quality-diversity frontier report (experiments/frontier.py): curves over seeds, the
dominance test, the table and the figures. Pure functions of the points, except the writer.

A point is one (model, curve, knob value) setting scored on one seed: {"model", "curve" (temperature,
top-p, truncation, DRS, SIR), "knob", "value", "seed", metric: value, ...}. Over seeds a setting
becomes a mean and a sample standard deviation per metric (experiments/reporting/literature.py's
mean_std). On a plane (quality axis, diversity axis), a point dominates a reference curve when,
at its own diversity, it is better in quality than the reference curve there (the polyline through
its knob values, interpolated linearly; the best crossing where it meets that diversity more than
once), by more than two standard deviations of the difference (sqrt(s_point^2 + s_curve^2), the
curve's s interpolated alike); a point outside the curve's diversity range gets no verdict, nor
does any point when either side has fewer than two seeds (no standard deviation to test against).
A guided point whose discriminator had no signal on some seed (its held-out AUC interval not above
1/2: experiments/generators/guidance.py) is drawn with its own marker and gets no verdict: it says
nothing about guidance, only that the discriminator never learnt.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.core.checkpoint import write_text
from experiments.reporting.literature import mean_std

# +1: higher is better, -1: lower is better
DIRECTION = {"bleu5": 1, "self_bleu5": -1, "lm_score": -1, "reverse_lm_score": -1, "precision": 1, "recall": 1,
             "nll_oracle": -1, "nll_test": -1, "mauve": 1}
# the LM scores are in bits per byte on text, in nats per token on the oracles (scoring/lm_score.py)
LABELS = {"bleu5": "BLEU-5", "self_bleu5": "Self-BLEU-5", "lm_score": "LM score (NLL of samples)",
          "reverse_lm_score": "reverse LM score (NLL of real test)", "precision": "precision",
          "recall": "recall", "nll_oracle": "NLL-oracle", "mauve": "MAUVE (own features)"}


def aggregate(points: list[dict], metrics: list[str]) -> list[dict]:
    """One entry per (model, curve, value) in first-seen order: {"model", "curve", "knob", "value",
    "seeds", metric: {"mean", "std", "values"}} over the seeds that scored it."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((p["model"], p["curve"], p["value"]), []).append(p)
    out = []
    for (model, curve, value), ps in groups.items():
        entry = {"model": model, "curve": curve, "knob": ps[0]["knob"], "value": value,
                 "seeds": [p["seed"] for p in ps]}
        for m in metrics:
            values = [p[m] for p in ps if p.get(m) is not None]
            if values:
                mean, std = mean_std(values)
                entry[m] = {"mean": mean, "std": std, "values": values}
        for extra in ("cost",):
            if any(extra in p for p in ps):
                entry[extra] = mean_std([p[extra] for p in ps])[0]
        silent = [p["seed"] for p in ps if p.get("signal") is False]
        if silent:
            entry["no_signal_seeds"] = silent
        out.append(entry)
    return out


def curve_points(summary: list[dict], model: str, curve: str) -> list[dict]:
    return [e for e in summary if e["model"] == model and e["curve"] == curve]


def interpolate(curve: list[dict], x_key: str, y_key: str, x: float, direction: int = 1) -> tuple[float, float] | None:
    """(y mean, y std) of the reference curve at x on the x_key axis; None outside its range.
    The curve is the polyline through its points in knob order (value), interpolated linearly on
    each segment. Where it meets x more than once (the reverse LM score is U-shaped in temperature;
    a saturated axis repeats an x), the best y in `direction` is the reference: the best the curve
    reaches at that diversity."""
    pts = [(e[x_key]["mean"], e[y_key]["mean"], e[y_key]["std"]) for e in sorted(curve, key=lambda e: e.get("value", 0))
           if x_key in e and y_key in e]
    found = [(y0, s0) for x0, y0, s0 in pts if x0 == x]
    for (x0, y0, s0), (x1, y1, s1) in zip(pts, pts[1:]):
        if x0 != x1 and min(x0, x1) <= x <= max(x0, x1):
            w = (x - x0) / (x1 - x0)
            found.append((y0 + w * (y1 - y0), s0 + w * (s1 - s0)))
    return max(found, key=lambda f: direction * f[0]) if found else None


def dominance(point: dict, reference: list[dict], quality: str, diversity: str) -> dict:
    """The point against the reference curve at the point's diversity: {"verdict": "dominates" |
    "dominated" | "within noise" | "outside the curve's range", "margin" (quality gain, in the
    quality axis's better direction), "sigma" (2-sigma threshold)}."""
    if quality not in point or diversity not in point:
        return {"verdict": "not scored", "margin": None, "sigma": None}
    if point.get("no_signal_seeds"):
        return {"verdict": NO_SIGNAL, "margin": None, "sigma": None}
    if len(point[quality].get("values", [])) < 2 or any(len(e[quality].get("values", [])) < 2 for e in reference
                                                         if quality in e):
        return {"verdict": "one seed: no test", "margin": None, "sigma": None}
    ref = interpolate(reference, diversity, quality, point[diversity]["mean"], DIRECTION[quality])
    if ref is None:
        return {"verdict": "outside the curve's range", "margin": None, "sigma": None}
    margin = DIRECTION[quality] * (point[quality]["mean"] - ref[0])
    sigma = 2 * (point[quality]["std"] ** 2 + ref[1] ** 2) ** 0.5
    verdict = "dominates" if margin > sigma else "dominated" if -margin > sigma else "within noise"
    return {"verdict": verdict, "margin": margin, "sigma": sigma}


NO_SIGNAL = "no signal: left out"  # the verdict of a point whose discriminator never learnt


def fmt(entry: dict, m: str) -> str:
    if m not in entry:
        return "-"
    return f"{entry[m]['mean']:.3f} ± {entry[m]['std']:.3f}" if len(entry[m]["values"]) > 1 else \
        f"{entry[m]['mean']:.3f}"


def table(summary: list[dict], metrics: list[str]) -> str:
    lines = ["| model | curve | knob | seeds | " + " | ".join(LABELS.get(m, m) for m in metrics) + " | cost |",
             "|---|---|---|---|" + "---|" * (len(metrics) + 1)]
    for e in summary:
        cost = f"{e['cost']:.2f}" if "cost" in e else "1"
        lines.append(f"| {e['model']} | {e['curve']} | {e['knob']} = {e['value']:g} | {len(e['seeds'])} | "
                     + " | ".join(fmt(e, m) for m in metrics) + f" | {cost} |")
    return "\n".join(lines)


def _signed(x) -> str:
    return "-" if x is None else f"{x:+.4f}"


def dominance_table(summary: list[dict], reference: tuple[str, str], planes: list[tuple[str, str]]) -> str:
    """Every point of another curve against the reference curve (model, curve), on each plane."""
    ref = curve_points(summary, *reference)
    lines = ["| model | curve | knob | plane | verdict | margin | 2 sigma |", "|---|---|---|---|---|---|---|"]
    for e in summary:
        if (e["model"], e["curve"]) == reference:
            continue
        for q, d in planes:
            v = dominance(e, ref, q, d)
            sigma = "-" if v["sigma"] is None else f"{v['sigma']:.4f}"
            lines.append(f"| {e['model']} | {e['curve']} | {e['knob']} = {e['value']:g} | {LABELS.get(q, q)} at "
                         f"equal {LABELS.get(d, d)} | {v['verdict']} | {_signed(v['margin'])} | {sigma} |")
    return "\n".join(lines)


def best_points(summary: list[dict], metric: str) -> str:
    """The single-number summary: each curve's best point by `metric` (mean over seeds)."""
    lines = [f"| model | curve | best point | {LABELS.get(metric, metric)} | seeds |", "|---|---|---|---|---|"]
    for model, curve in dict.fromkeys((e["model"], e["curve"]) for e in summary):
        pts = [e for e in curve_points(summary, model, curve) if metric in e]
        if pts:
            best = max(pts, key=lambda e: DIRECTION[metric] * e[metric]["mean"])
            lines.append(f"| {model} | {curve} | {best['knob']} = {best['value']:g} | {fmt(best, metric)} | "
                         f"{len(best[metric]['values'])} |")
    return "\n".join(lines)


def learning_curve(g: dict, rows: int = 6) -> str:
    """A discriminator's held-out AUC at up to `rows` evaluations, evenly spaced: "step: AUC, ..."."""
    curve = g.get("curve") or []
    if not curve:
        return "-"
    picks = sorted({round(i * (len(curve) - 1) / max(rows - 1, 1)) for i in range(rows)})
    return ", ".join(f"{curve[i]['step']}: {curve[i]['auc']:.3f}" for i in picks)


def guides_table(guides: dict) -> str:
    """{seed: {model: {source: discriminator report}}} -> one row per discriminator: its held-out
    figures at the kept step, whether it has signal, and its learning curve."""
    lines = ["| model (discriminator) | seed | held-out AUC [95 %] | accuracy | ECE | Brier | kept step of | "
             "signal | held-out AUC by step |", "|---|---|---|---|---|---|---|---|---|"]
    for seed, per_model in guides.items():
        for model, per_source in per_model.items():
            for source, g in per_source.items():
                if "val_auc" not in g:  # a report from before the AUC was measured
                    auc, kept, signal = "-", f"epoch {g.get('best_epoch', '-')} of {g.get('epochs', '-')}", "-"
                else:
                    auc = f"{g['val_auc']:.3f} [{g['val_auc_lo']:.3f}, {g['val_auc_hi']:.3f}]"
                    kept, signal = f"{g['best_step']} of {g['steps']}", "yes" if g["signal"] else "**no**"
                lines.append(f"| {model} ({source}) | {seed} | {auc} | {g['val_accuracy']:.3f} | {g['val_ece']:.3f} | "
                             f"{g['val_brier']:.3f} | {kept} | {signal} | {learning_curve(g)} |")
    return "\n".join(lines)


def given_up(guides: dict) -> str:
    """{seed: {model: {source: discriminator report}}} -> the guided points given up (a DRS gamma
    that keeps too few candidates), one line each, so that a row with fewer seeds says why."""
    lines = [f"- seed {seed}, {model}: {why}" for seed, per_model in guides.items()
             for model, per_source in per_model.items() for g in per_source.values() for why in g.get("skipped", [])]
    if not lines:
        return ""
    return ("Guided points given up (rejection sampling past `drs_max_cost` candidates per sample; a row "
            "above then has fewer seeds, and a curve with none at a gamma has no row):\n\n" + "\n".join(lines))


def plot_plane(summary: list[dict], x: str, y: str, path: Path, title: str) -> None:
    """Every curve on one plane, seed standard deviations as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for model, curve in dict.fromkeys((e["model"], e["curve"]) for e in summary):
        pts = [e for e in curve_points(summary, model, curve) if x in e and y in e]
        if not pts:
            continue
        pts.sort(key=lambda e: e["value"])  # knob order: a U-shaped axis (reverse LM score) is no zigzag
        silent = any(e.get("no_signal_seeds") for e in pts)  # a discriminator that never learnt: its own marker
        ax.errorbar([e[x]["mean"] for e in pts], [e[y]["mean"] for e in pts], xerr=[e[x]["std"] for e in pts],
                    yerr=[e[y]["std"] for e in pts], marker="x" if silent else "o", ms=5 if silent else 3,
                    ls=":" if silent else "-", capsize=2,
                    label=f"{model} {curve}" + (" (no signal)" if silent else ""))
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict_counts(summary: dict) -> list[dict]:
    """Per plane of one frontier's results.json: how many points dominate the reference curve, are
    dominated, within noise or untested, and the dominating points themselves."""
    fcfg = summary["config"]["frontier"]
    reference = tuple(fcfg["reference"].split(":"))
    ref = curve_points(summary["points"], *reference)
    out = []
    for plane in fcfg["planes"].split(","):
        q, d = plane.split(":")
        counts, winners, own = {}, [], []
        for e in summary["points"]:
            if (e["model"], e["curve"]) == reference:
                continue
            v = dominance(e, ref, q, d)
            counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
            if v["verdict"] == NO_SIGNAL:
                continue
            if v["verdict"] == "dominates":
                winners.append(f"{e['model']} {e['curve']} {e['knob']} = {e['value']:g} ({_signed(v['margin'])}, "
                               f"2 sigma {v['sigma']:.4f})")
            if e["curve"].startswith(("DRS", "SIR")):  # does guidance help this model: against its own temperature
                own.append(dominance(e, curve_points(summary["points"], e["model"], "temperature"), q, d)["verdict"])
        out.append({"plane": f"{LABELS.get(q, q)} at equal {LABELS.get(d, d)}", "counts": counts, "winners": winners,
                    "own": {k: own.count(k) for k in dict.fromkeys(own)}})
    return out


def write_index(path: Path) -> Path:
    """The report at `path`: one section per frontier in its folder (each <dataset>/results.json),
    the dominance verdicts counted per plane and the points that dominate; each links its report."""
    folder = Path(path).parent
    md = ["# The quality-diversity frontier: every dataset", "",
          "Rewritten by every `python -m experiments.frontier` run whose config names this file as its "
          "`index`, from the results.json of each dataset's frontier in this folder. A point dominates when "
          "it beats the reference curve at its own diversity by more than two seed standard deviations of the "
          "difference: a one-sided test at about 2.5 % if the differences were normal, so among dozens of "
          "points tested per plane a dominating point or two is what chance alone gives.", ""]
    for results in sorted(Path(folder).glob("*/results.json")):
        summary = json.loads(results.read_text())
        fcfg = summary["config"]["frontier"]
        model, curve = fcfg["reference"].split(":")
        md += [f"## [{fcfg['title']}]({results.parent.name}/report.md)", "",
               f"`{summary['command']}` ({summary['date']}); training seeds {summary['seeds']}; reference: "
               f"{model}'s {curve} curve.", "",
               "| plane | dominates | within noise | dominated | no signal | no test |", "|---|---|---|---|---|---|"]
        planes = verdict_counts(summary)
        for v in planes:
            c = v["counts"]
            untested = sum(n for k, n in c.items() if k not in ("dominates", "within noise", "dominated", NO_SIGNAL))
            md.append(f"| {v['plane']} | {c.get('dominates', 0)} | {c.get('within noise', 0)} | "
                      f"{c.get('dominated', 0)} | {c.get(NO_SIGNAL, 0)} | {untested} |")
        md += [""] + [f"- dominates on {v['plane']}: {w}" for v in planes for w in v["winners"]]
        md += [f"- guided points against their own model's temperature curve, {v['plane']}: "
               + ", ".join(f"{k} {n}" for k, n in v["own"].items()) for v in planes if v["own"]] + [""]
    write_text(Path(path), "\n".join(md) + "\n")
    return Path(path)
