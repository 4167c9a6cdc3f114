"""The written report of a comparison (experiments.compare): markdown, JSON and figures.

`write_report(results, report_dir)` writes into report_dir (and
`python -m experiments.report research/<experiment>/results.json` re-renders it from the
recorded numbers and TensorBoard runs, without re-scoring):
    report.md                results tables, temperature sweep, samples side by side, figures
    results.json             every number in the report (and the samples)
    learning_curves.png      train/loss, val/nll and the periodic eval/ metrics against step,
                             read back from each run's TensorBoard events (reporting/events.py),
                             never from text logs
    bleu.png                 BLEU-2..5 and Self-BLEU-2..5 bars, real data and published rows included
    quality_diversity.png    the temperature (and psi) sweep, one curve per model, as in
                             Caccia et al. 2020: BLEU-5 against Self-BLEU-5; on `oracle` also
                             NLL-oracle against NLL-test; on `numbers` also precision against recall
    lengths.png              sample length distributions against the test split's

Optional keys, rendered when present (older results.json files lack them and still render):
    results["splits"]           {"train", "val", "test": what each split is (file, lines),
                                 "bleu_references": the split BLEU is scored against,
                                 "eval_references": the split of the trainers' eval/ metrics
                                 (absent: "val", periodic.SampleEvaluator's default since
                                 splits were recorded; results without splits predate it: "test"),
                                 "oov_val", "oov_test": out-of-vocabulary rates}: the Data section
    row["scored"]               what exactly was scored (checkpoint, step, estimator): a list
                                 under the results tables
    row["metrics"]["nll_K"]     K of a latent model's NLL estimate: its NLL cells read "≤ x (K=k)"
    row["warnings"]             collapse warnings against the real-data row: the Warnings section

Figures use matplotlib's object API (Figure and its Agg canvas): no pyplot state, no display.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from matplotlib.figure import Figure

from experiments.core.checkpoint import write_text
from experiments.reporting.events import read_scalars
from experiments.scoring.metrics import DEFAULT_NS, length_histogram

CURVE_TAGS = ["train/loss", "val/nll", "eval/bleu5", "eval/self_bleu5", "eval/precision", "eval/nll_oracle"]

# (key, header, format) of the two results tables; a column appears when some row has it
LIKELIHOOD_COLUMNS = [("tokens", "tokens (vocab)", "{}"),
                      ("params", "params", "{:,}"), ("steps", "steps", "{:,}"), ("train_seconds", "train s", "{:.0f}"),
                      ("nll_test", "NLL-test", "{:.3f}"), ("nll_test_with_pad", "NLL-test w/ pad†", "{:.3f}"),
                      ("bpb_test", "bits/byte (test)", "{:.3f}"), ("unk_test", "unk (test)", "{:.1%}")]
LIKELIHOOD_COLUMNS += [(f"bleu{n}", f"BLEU-{n}", "{:.3f}") for n in DEFAULT_NS]
LIKELIHOOD_COLUMNS += [(f"self_bleu{n}", f"Self-BLEU-{n}", "{:.3f}") for n in DEFAULT_NS]
SAMPLE_COLUMNS = [("distinct1", "distinct-1", "{:.3f}"), ("distinct2", "distinct-2", "{:.3f}"),
                  ("unique_share", "unique", "{:.3f}"), ("length_mean", "length", "{:.2f}"),
                  ("length_tv", "length TV", "{:.3f}"), ("lm_score", "LM score", "{:.3f}"),
                  ("reverse_lm_score", "reverse LM", "{:.3f}"), ("nll_oracle", "NLL-oracle", "{:.3f}"),
                  ("oracle_invalid", "oracle-invalid", "{:.3f}"), ("precision", "precision", "{:.3f}"),
                  ("novelty", "novelty", "{:.3f}"), ("recall", "recall", "{:.4f}"),
                  ("distinct_valid", "distinct valid", "{:,}")]


NLL_KEYS = ("nll_test", "nll_test_with_pad")  # estimates, for a latent model, with nll_K latents
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def _references(results: dict) -> tuple[str, str]:
    """(the split of the final BLEU references, the split of the trainers' eval/ references), spelt out.
    The trainers' eval/ metrics moved from test to validation when results began to record
    "splits"; a results.json without it was written while they were scored against test."""
    splits = results.get("splits")
    bleu = (splits or {}).get("bleu_references", "test")
    eval_ = (splits or {}).get("eval_references", "val" if splits is not None else "test")
    return SPLIT_NAMES.get(bleu, bleu), SPLIT_NAMES.get(eval_, eval_)


def _value(row: dict, key: str):
    return row.get(key) if key in ("tokens", "params", "steps", "train_seconds") else row["metrics"].get(key)


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if "," in spec and isinstance(value, float):
        value = int(round(value))
    return spec.format(value)


def _nll_cell(value, spec: str, k, unk=None) -> str:
    """An NLL figure; for a latent model (k = K of its estimate) the upper bound it is: "≤ 1.461 (K=8)";
    with unk (a word model's unknown-word rate, bits per byte only) above zero, the lower bound it
    is: "≥ 1.461" (each unseen word cost one <unk>, never its spelling)."""
    text = _fmt(value, spec)
    if text == "–":
        return text
    if k is not None:
        return f"≤ {text} (K={k})"
    return f"≥ {text}" if unk else text


def _table(rows: list[dict], columns: list[tuple]) -> str:
    columns = [c for c in columns if any(_value(r, c[0]) is not None for r in rows)]
    lines = ["| model | " + " | ".join(h for _, h, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in rows:
        name = f"*{r['label']}*" if r["kind"] != "model" else r["label"]
        k = r["metrics"].get("nll_K")
        cells = [_nll_cell(_value(r, key), f, k) if key in NLL_KEYS else
                 _nll_cell(_value(r, key), f, k, r["metrics"].get("unk_test")) if key == "bpb_test" else
                 _fmt(_value(r, key), f) for key, _, f in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return (text or "(empty)").replace("|", "\\|")


def _samples_table(rows: list[dict], n: int) -> str:
    shown = [r for r in rows if r["samples"]]
    lines = ["| # | " + " | ".join(r["label"] for r in shown) + " |", "|---|" + "---|" * len(shown)]
    for i in range(n):
        lines.append(f"| {i + 1} | " + " | ".join(_cell(r["samples"][i]) if i < len(r["samples"]) else ""
                                                 for r in shown) + " |")
    return "\n".join(lines)


def _sweep_table(rows: list[dict]) -> str:
    keys = ["bleu5", "self_bleu5", "nll_test", "nll_oracle", "precision", "recall", "distinct2", "unique_share"]
    points = [(r, p) for r in rows for p in r["sweep"]]
    if not points:
        return ""
    keys = [k for k in keys if any(k in p for _, p in points)]
    lines = ["| model | T | psi | " + " | ".join(keys) + " |", "|---|---:|---:|" + "---:|" * len(keys)]
    for r, p in points:
        k_latents = r["metrics"].get("nll_K")
        cells = [_nll_cell(p.get(k), "{:.3f}", k_latents) if k in NLL_KEYS else _fmt(p.get(k), "{:.3f}")
                 for k in keys]
        lines.append(f"| {r['label']} | {p['temperature']:g} | {p['psi']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# what was scored, on which data, and what to distrust


def _pct(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else str(x)


def _data_section(results: dict) -> list[str]:
    """Which split every figure of the report is on, the split files and OOV rates when recorded."""
    rows, cfg = results["rows"], results["config"]
    splits = dict(results.get("splits") or {})
    have = {k for r in rows for k, v in r["metrics"].items() if v is not None}
    bleu_refs, eval_refs = _references(results)
    splits.pop("bleu_references", None)
    splits.pop("eval_references", None)
    named = [(k, what) for k, what in (("train", "training"), ("val", "validation"), ("test", "test")) if k in splits]
    if named:
        files = "; ".join(f"{what}: {splits.pop(k)}" for k, what in named)
        lines = [f"- Splits of `{results['dataset']}`: {files}."]
    else:
        lines = [f"- Splits of `{results['dataset']}` as `datasets.load_corpus` builds them "
                 "(files and sizes not recorded in this results.json)."]
    oov = [(what, splits.pop(k)) for k, what in (("oov_val", "validation"), ("oov_test", "test")) if k in splits]
    if oov:
        lines.append("- Out-of-vocabulary rate (tokens absent from the training vocabulary, read as `<unk>`): "
                     + ", ".join(f"{what} {_pct(v)}" for what, v in oov) + ".")
    lines += [f"- Real-data row (and its column of samples): {cfg['num_samples']:,} sentences of the training "
              "split.",
              "- NLL-test, NLL-test w/ pad, the sweep's NLL-test: the test split.",
              f"- BLEU-n (table, bleu.png, sweep): each sample against every sentence of the {bleu_refs} split.",
              "- Self-BLEU-n, distinct-n, unique: among the samples of the same set; no corpus split."]
    if "length_tv" in have or results.get("test_length_hist"):
        lines.append("- length TV and lengths.png: sample lengths against the test split's.")
    if "lm_score" in have or "reverse_lm_score" in have:
        lines.append("- LM score: a GPT-2 trained on the training split (selected on validation) scores the "
                     "samples; reverse LM: a GPT-2 trained on the samples (selected on validation) is scored "
                     "on the test split." + _judge_text(results))
    if "nll_oracle" in have:
        lines.append("- NLL-oracle: the samples under the oracle LSTM that generated the data; no split.")
    if "recall" in have:
        lines.append("- precision: samples that are valid number names; novelty: against the training split; "
                     "recall: share of the test split's numbers produced.")
    lines.append(f"- In-training curves (learning_curves.png): train/loss on training batches, val/nll on the "
                 f"validation split, eval/* on samples drawn during training (eval/bleu*, eval/length_tv and "
                 f"eval/recall against the {eval_refs} split).")
    lines += [f"- {k}: {_pct(v) if k.startswith('oov') else v}" for k, v in splits.items()]  # anything else recorded
    return ["## Data", ""] + lines + [""]


def _judge_text(results: dict) -> str:
    """How the scorer LMs read text, for results that record it (older ones scored word ids, nats per token)."""
    judge = results.get("judge") or {}
    if judge.get("unit") == "bits per byte":
        return (f" Both read every text in one canonical form (the corpus's tokens joined by single spaces, "
                f"lowercased where the data is) as byte-level BPE of {judge.get('bpe_vocab', 0):,} symbols, and "
                "score in bits per byte (experiments/scoring/lm_score.py).")
    return f" Both score in {judge['unit']}." if judge.get("unit") else ""


def _time_section(results: dict) -> list[str]:
    """Where the wall time went: training per model, the judge per row (the scorer LMs, the sample
    metrics, the sweeps), for results that record it."""
    rows = [r for r in results["rows"] if r.get("timing") is not None]
    if not rows:
        return []
    parts = [("sample_metrics", "sample metrics"), ("lm_score", "LM score"), ("reverse_lm", "reverse LM"),
             ("mauve", "MAUVE"), ("sweep", "sweep")]
    judge = results.get("judge") or {}
    fit = judge.get("scorer_seconds", 0.0) + judge.get("bpe_seconds", 0.0)
    lines = ["| row | training s | sampling + NLL s | " + " | ".join(f"{h} s" for _, h in parts) + " | judge s |",
             "|" + "---|" * (len(parts) + 4)]
    total_judge = fit
    for r in rows:
        t = r["timing"]
        judged = sum(t.get(k, 0.0) for k, _ in parts)
        total_judge += judged
        train = "reused" if r["label"] in (results.get("reused") or []) else _fmt(r.get("train_seconds"), "{:.0f}")
        lines.append(f"| {r['label']} | {train} | {_fmt(t.get('sampling', 0.0) + t.get('nll', 0.0), '{:.1f}')} | "
                     + " | ".join(_fmt(t.get(k), "{:.1f}") for k, _ in parts) + f" | {judged:.1f} |")
    wall = results["wall_seconds"]
    reused = judge.get("scorer_reused")
    how = ("reused from the cache" if reused else f"trained in {judge.get('scorer_seconds', 0.0):.1f} s"
           if reused is not None else "not needed")
    return ["## Time", "", *lines, "",
            f"The LM-score GPT-2: {how}" + (f" (BPE fitted in {judge['bpe_seconds']:.1f} s)" if judge.get("bpe_seconds")
                                            else "") + f"; estimated before training: "
            f"{judge.get('estimate_seconds', 0.0):.0f} s for the scorer LMs. Judge in all (scorer LMs, sample metrics, "
            f"sweeps): {total_judge:.0f} s of {wall:.0f} s wall time ({total_judge / max(wall, 1e-9):.0%}).", ""]


def _scored_list(rows: list[dict]) -> list[str]:
    """'What each row scores': the checkpoint (and estimator) behind every row that says."""
    scored = [r for r in rows if r.get("scored")]
    if not scored:
        return []
    return ["What each row scores:", ""] + [f"- **{r['label']}**: {r['scored']}" for r in scored] + [""]


def _warnings_section(rows: list[dict]) -> list[str]:
    """Every row's warnings (collapse against the real-data row); 'None.' when checked and clean,
    nothing at all for results that predate the checks."""
    if not any("warnings" in r for r in rows):
        return []
    found = [f"- **{r['label']}**: {w}" for r in rows for w in (r.get("warnings") or [])]
    return ["## Warnings", ""] + (found or ["None."]) + [""]


# ---------------------------------------------------------------------------------------
# figures


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _colors(rows: list[dict]) -> dict[str, str]:
    """One colour per row, the same in every figure."""
    return {r["label"]: f"C{i % 10}" for i, r in enumerate(rows)}


def plot_learning_curves(rows: list[dict], path: Path) -> list[str]:
    """Draws the curves; returns the labels of the model rows whose runs have none to draw."""
    color = _colors(rows)
    # {} for a run directory that is not there (a results.json re-rendered on another machine)
    curves = {r["label"]: read_scalars(r["run_dir"], CURVE_TAGS) for r in rows if r["kind"] == "model"}
    tags = [t for t in CURVE_TAGS if any(t in c for c in curves.values())]
    cols = min(3, max(1, len(tags)))
    nrows = max(1, math.ceil(len(tags) / cols))
    fig = Figure(figsize=(4.5 * cols, 3.4 * nrows))
    for i, tag in enumerate(tags):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for label, c in curves.items():
            if tag in c:
                steps, values = c[tag]
                if len(steps) == 1:  # a model fitted in closed form (count bigram): one value, drawn as a level
                    ax.axhline(values[0], ls="--", color=color[label], label=f"{label} (fitted)")
                else:
                    ax.plot(steps, values, marker="o" if len(steps) < 4 else None, color=color[label], label=label)
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if tags:
        handles = {h.get_label(): h for ax in fig.axes for h in ax.get_lines()}
        fig.axes[0].legend(list(handles.values()), list(handles), fontsize=7)  # every model, once
    _save(fig, path)
    return [label for label, c in curves.items() if not c]


def plot_bleu(rows: list[dict], path: Path, references: str = "test") -> None:
    color = _colors(rows)
    fig = Figure(figsize=(11, 3.8))
    for j, (prefix, title) in enumerate(((("bleu", f"BLEU-n against the {references} split"),
                                          ("self_bleu", "Self-BLEU-n among the samples (lower = more diverse)")))):
        ax = fig.add_subplot(1, 2, j + 1)
        shown = [r for r in rows if all(f"{prefix}{n}" in r["metrics"] for n in DEFAULT_NS)]
        width = 0.8 / max(1, len(shown))
        for i, r in enumerate(shown):
            ax.bar([k + i * width for k in range(len(DEFAULT_NS))], [r["metrics"][f"{prefix}{n}"] for n in DEFAULT_NS],
                   width, label=r["label"], color=color[r["label"]], hatch="//" if r["kind"] != "model" else None)
        ax.set_xticks([k + width * (len(shown) - 1) / 2 for k in range(len(DEFAULT_NS))],
                      [f"n={n}" for n in DEFAULT_NS])
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_quality_diversity(rows: list[dict], dataset: str, path: Path) -> None:
    panels = [("bleu5", "self_bleu5", "BLEU-5 (quality →)", "Self-BLEU-5 (← diversity)")]
    if any("nll_oracle" in p for r in rows for p in r["sweep"]):
        panels.append(("nll_oracle", "nll_test", "NLL-oracle (← quality)", "NLL-test (← coverage)"))
    if any("precision" in p for r in rows for p in r["sweep"]):
        panels.append(("precision", "recall", "precision (quality →)", "recall (coverage →)"))
    color = _colors(rows)
    fig = Figure(figsize=(5.2 * len(panels), 4.4))
    for j, (xk, yk, xl, yl) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for r in rows:
            if r["kind"] == "model" and r["sweep"]:
                pts = [p for p in r["sweep"] if p["psi"] == 1.0]
                ax.plot([p[xk] for p in pts], [p[yk] for p in pts], marker="o", color=color[r["label"]],
                                label=r["label"])
                for p in pts:
                    ax.annotate(f"T={p['temperature']:g}", (p[xk], p[yk]), fontsize=6, alpha=0.7,
                                xytext=(3, 3), textcoords="offset points")
                trunc = [p for p in r["sweep"] if p["psi"] != 1.0]
                if trunc:  # the truncation sweep of a latent model, dashed in the same colour
                    ax.plot([p[xk] for p in trunc], [p[yk] for p in trunc], "--s", color=color[r["label"]],
                            label=f"{r['label']} (psi)")
                    for p in trunc:
                        ax.annotate(f"psi={p['psi']:g}", (p[xk], p[yk]), fontsize=6, alpha=0.7,
                                    xytext=(3, -8), textcoords="offset points")
            elif r["kind"] != "model" and xk in r["metrics"] and yk in r["metrics"]:
                ax.scatter([r["metrics"][xk]], [r["metrics"][yk]], marker="*", s=160, zorder=3,
                           color=color[r["label"]], label=r["label"])
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{dataset}: temperature sweep (one curve per model)")
    _save(fig, path)


def plot_lengths(rows: list[dict], reference_lengths: list[float], path: Path) -> None:
    color = _colors(rows)
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(range(len(reference_lengths)), reference_lengths, "k-", lw=3, alpha=0.4, label="test split")
    for r in rows:
        if r["kind"] == "model" and r.get("length_hist"):
            ax.plot(range(len(r["length_hist"])), r["length_hist"], marker=".", color=color[r["label"]],
                    label=r["label"])
    ax.set_xlabel("sample length (tokens)")
    ax.set_ylabel("share of samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


# ---------------------------------------------------------------------------------------


def _figures(results: dict, report_dir: Path, tokenize, test_texts) -> dict[str, str]:
    """Draw the figures into report_dir; {file name: caption}."""
    rows = results["rows"]
    bleu_refs, eval_refs = _references(results)
    figures = {"learning_curves.png": f"Learning curves (from the TensorBoard events): val/nll on the validation "
                                      f"split, eval/* against the {eval_refs} split",
               "bleu.png": f"BLEU against the {bleu_refs} split and Self-BLEU among the samples",
               "quality_diversity.png": "Quality-diversity: temperature sweep"}
    missing = plot_learning_curves(rows, report_dir / "learning_curves.png")
    if missing:
        figures["learning_curves.png"] += f" (no TensorBoard events found for: {', '.join(missing)})"
    plot_bleu(rows, report_dir / "bleu.png", bleu_refs)
    plot_quality_diversity(rows, results["dataset"], report_dir / "quality_diversity.png")
    if tokenize is not None and test_texts:  # histograms kept in results, so a re-render needs no data
        ref = [tokenize(t) for t in test_texts]
        sample_toks = {r["label"]: [tokenize(s) for s in r["samples"]] for r in rows if r["kind"] == "model"}
        max_len = max(max(map(len, ref)), *(max(map(len, s)) for s in sample_toks.values()))
        for r in rows:
            if r["label"] in sample_toks:
                r["length_hist"] = length_histogram(sample_toks[r["label"]], max_len)
        results["test_length_hist"] = length_histogram(ref, max_len)
    if results.get("test_length_hist"):
        plot_lengths(rows, results["test_length_hist"], report_dir / "lengths.png")
        figures["lengths.png"] = "Sample lengths against the test split"
    return figures


def _header(results: dict) -> list[str]:
    """Title, the command that reproduces the report, the budget and how the samples were drawn."""
    rows, cfg = results["rows"], results["config"]
    models = [r for r in rows if r["kind"] == "model"]
    budget = f"at most {cfg['max_steps']:,} optimizer steps" + (
        f" and {cfg['max_minutes']:g} wall-clock minutes" if cfg["max_minutes"] else "") + " per model"
    return [f"# {results['experiment']}: {len(models)} generator{'s' * (len(models) != 1)} on `{results['dataset']}`",
            "", "Reproduce:", "", "```bash", results["command"], "```", "",
            f"Budget: {budget} (training seed {cfg['seed']}). Each model drew {cfg['num_samples']:,} samples at "
            f"temperature {cfg['temperature']:g} (seed {cfg['sample_seed']}); the *real data* row is "
            f"{cfg['num_samples']:,} training sentences drawn with the same seed and scored the same way. "
            f"Wall time of the whole comparison: {results['wall_seconds'] / 60:.1f} min"
            + (f" on {results['device']} with {results['threads']} torch thread(s)" if "threads" in results else "")
            + f". TensorBoard: "
            f"`tensorboard --logdir {results['runs_dir']}`. Metric definitions: research/README.md."
            + (f" Training runs reused from an earlier invocation (--reuse true): {', '.join(results['reused'])}; "
               "their training time is in the table, not in this wall time; without --reuse true the command "
               "retrains them." if results.get("reused") else ""), ""]


def _definitions(rows: list[dict], bleu_refs: str, unit: str = "nats per token") -> str:
    """What each column of the results tables is."""
    return ("NLL-test: nats per token on the test split, padding excluded, <eos> included; "
            + ("what each row scores is listed above. " if any(r.get("scored") for r in rows) else
               "the best-on-validation checkpoint of a language model, the EMA generator at the end of training "
               "of a GAN. ")
            + ("A token is the model's own (a character, a word or a BPE piece), so NLL-test compares models of "
               "one vocabulary only; bits/byte (test) is the same summed NLL in bits over the UTF-8 bytes of the "
               "test lines (cleaned, lowercased where set) plus one per line for its end, one denominator for "
               "every row: the column that compares across vocabularies. unk (test): the share of test tokens "
               "outside a model's vocabulary, each scored as one <unk> and never spelt, so that model's bits per "
               "byte is a lower bound (≥) where the share is above zero. "
               if any(r["metrics"].get("bpb_test") is not None for r in rows) else "")
            + ("≤ x (K=k): a latent model's NLL, estimated from K latents drawn from the prior (log-mean-exp), is "
               "an upper bound on its NLL in expectation, tightening as K grows (research/README.md, Latent NLL). "
               if any(r["metrics"].get("nll_K") is not None for r in rows) else
               "The GAN's NLL-test is an estimate from latents drawn from the prior, an upper bound in "
               "expectation (research/README.md, Latent NLL). " if any(r.get("family") == "gan" for r in rows) else "")
            + "† NLL-test w/ pad: the text-GAN papers' figure on the same test split, averaged over all "
            "block_size positions of every sequence with the pad targets counted as predicted with "
            "probability 1 (not per token; comparable only with papers that print it). BLEU: each sample "
            f"against the whole {bleu_refs} split (nltk method1, uniform weights), averaged. Self-BLEU: each "
            "sample against the other samples of the same set. distinct-n, unique: over the samples; length TV: "
            f"sample lengths against the test split's. LM score: NLL ({unit}) of the samples under a small GPT-2 "
            "trained on the real training split and selected on validation (for the real-data row it has seen "
            f"those very sentences, so its LM score is optimistic); reverse LM: NLL ({unit}) on the test split of "
            "a small GPT-2 trained on the samples. A generator far above the real-data row on BLEU and Self-BLEU "
            "has collapsed, not improved.")


def write_report(results: dict, report_dir: Path, tokenize=None, test_texts=None) -> Path:
    """Write report.md, results.json and the figures into report_dir; returns report.md's path.

    tokenize and test_texts (optional): to draw the sample length distributions against
    the test split's (or histograms already in results, from an earlier write).
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    rows, cfg = results["rows"], results["config"]
    bleu_refs, _ = _references(results)
    figures = _figures(results, report_dir, tokenize, test_texts)
    md = [*_header(results), *_data_section(results),
          "## Results", "", _table(rows, LIKELIHOOD_COLUMNS), "", _table(rows, SAMPLE_COLUMNS), "",
          *_scored_list(rows), _definitions(rows, bleu_refs, (results.get("judge") or {}).get("unit", "nats per token")),
          ""]
    if any(r["kind"] == "published" for r in rows):
        md += ["Rows in italics other than *real data* are published figures, copied from the sources "
               "below; their protocols (tokenization, reference subset, sample count) differ from ours.", ""]
        md += [f"- {r['label']}: {r.get('source', 'no source recorded')}" for r in rows if r["kind"] == "published"]
        md += [""]
    md += _warnings_section(rows)
    md += _time_section(results)
    md += ["## Figures", ""]
    md += [f"![{caption}]({name})\n" for name, caption in figures.items()]
    sweep = _sweep_table(rows)
    if sweep:
        md += ["## Temperature sweep", "",
               f"{cfg['num_samples']:,} samples per point, seed {cfg['sample_seed']}; NLL-test of the "
               f"temperature-scaled model (logits / T) on the test split; bleu5 against the {bleu_refs} split, "
               "self_bleu5 among the samples.", "", sweep, ""]
        md += [f"*{r['label']}*: {r['sweep_note']}." for r in rows if r.get("sweep_note")]
        md += [""] if any(r.get("sweep_note") for r in rows) else []
    md += ["## Samples", "", f"The first {cfg['n_show']} samples of each model at temperature "
           f"{cfg['temperature']:g}, and real training sentences.", "", _samples_table(rows, cfg["n_show"]), ""]
    path = report_dir / "report.md"
    write_text(path, "\n".join(md))
    write_text(report_dir / "results.json", json.dumps(results, indent=1, default=str))
    return path
