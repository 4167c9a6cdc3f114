"""Figures and tables of GAN runs (experiments.gan_report), from their recorded data: the
curves of TensorBoard tags against step (reporting/events.py), the table of each run's
metrics.json (EMA generator after adversarial training beside the generator after MLE
pretraining), the temperature / truncation sweep of both generators and its
quality-diversity figure, and how much a run's generator uses its latent.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from experiments.reporting.events import read_scalars

# (key in metrics.json without the ema/ or pretrained/ prefix, header, format)
COLUMNS = [("test_nll", "NLL-test", "{:.3f}"), ("test_bpb", "bits/byte (test)", "{:.3f}"),
           ("val_nll", "NLL-val", "{:.3f}"), ("nll_oracle", "NLL-oracle", "{:.3f}"),
           ("bleu2", "BLEU-2", "{:.3f}"), ("bleu5", "BLEU-5", "{:.3f}"), ("self_bleu2", "Self-BLEU-2", "{:.3f}"),
           ("self_bleu5", "Self-BLEU-5", "{:.3f}"), ("unique_share", "unique", "{:.3f}"),
           ("precision", "precision", "{:.3f}"), ("distinct_valid", "distinct valid", "{:d}"),
           ("novelty", "novelty", "{:.3f}"), ("recall", "recall", "{:.4f}"), ("length_mean", "length", "{:.2f}")]


def table(runs: list[Path]) -> str:
    rows = []
    for run_dir in runs:
        m = json.loads((run_dir / "metrics.json").read_text())
        config = run_dir / "config.json"
        settings = json.loads(config.read_text())["train"] if config.is_file() else {}
        start = (f"the GPT-2 it starts as ({settings['init_lm']})" if settings.get("init_lm")
                 else "after MLE pretraining")
        for which, label in (("pretrained", start), ("ema", "after adversarial training (EMA)")):
            if f"{which}/test_nll" in m:
                rows.append((f"{run_dir.name}: {label}", m, which))
    keys = [c for c in COLUMNS if any(f"{w}/{c[0]}" in m for _, m, w in rows)]
    lines = ["| generator | " + " | ".join(h for _, h, _ in keys) + " |", "|---|" + "---:|" * len(keys)]
    for label, m, which in rows:
        cells = []
        for k, _, fmt in keys:
            v = m.get(f"{which}/{k}")
            cells.append("" if v is None else fmt.format(int(v) if fmt == "{:d}" else v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    settings = {r.name: json.loads((r / "metrics.json").read_text()) for r in runs}
    lines.append("")
    lines += [f"- `{name}`: {m['pretrain_steps']} pretraining + {m['adv_steps']} adversarial steps in "
              f"{m['train_seconds']:.0f} s; samples at temperature {m['temperature']:g}, psi {m['psi']:g}"
              for name, m in settings.items()]
    return "\n".join(lines) + "\n"


def plot(runs: list[Path], tags: list[str], title: str, path: Path) -> None:
    curves = [read_scalars(run_dir, tags) for run_dir in runs]
    fig = Figure(figsize=(4.6 * len(tags), 3.8))
    for j, tag in enumerate(tags):
        ax = fig.add_subplot(1, len(tags), j + 1)
        for i, run_dir in enumerate(runs):
            color = f"C{i}"
            if tag in curves[i]:
                ax.plot(*curves[i][tag], marker=".", color=color, label=run_dir.name)
            m = json.loads((run_dir / "metrics.json").read_text())
            if m["pretrain_steps"] and m["adv_steps"]:  # where the adversarial phase starts
                ax.axvline(m["pretrain_steps"], color=color, ls=":", alpha=0.6)
        ax.set_xlabel("step (dotted: end of MLE pretraining)")
        ax.set_title(tag, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def temperature_sweep(runs: list[Path], temperatures: list[float], n: int, data_dir: str, seeds=(0,),
                      psis=()) -> dict:
    """{run name: {"pretrained" | "ema": [{temperature, psi, metric: mean over seeds, metric_seeds: [...]}, ...]}},
    and "ema_psi": the EMA generator at temperature 1 and each truncation psi (when psis are given)."""
    import torch

    from datasets import DataConfig, build_tokenizer
    from experiments.scoring.samples import SampleEvaluator
    from experiments.generators.families import GANSampler

    out = {}
    for run_dir in runs:
        c = json.loads((run_dir / "config.json").read_text())["train"]
        corpus = DataConfig.from_settings({**c, "data_dir": data_dir or c["data_dir"]}).load()
        evaluator = SampleEvaluator(corpus, build_tokenizer(corpus), references="test")
        out[run_dir.name] = {}
        for which, ckpt, settings in (("pretrained", "pretrained.pt", [(t, 1.0) for t in temperatures]),
                                      ("ema", "last.pt", [(t, 1.0) for t in temperatures]),
                                      ("ema_psi", "last.pt", [(1.0, p) for p in psis])):
            if not settings:
                continue
            sampler = GANSampler(run_dir / ckpt, corpus, torch.device("cpu"))
            points = []
            for t, psi in settings:
                per_seed = [evaluator.score(sampler.sample(n, temperature=t, psi=psi, seed=seed)) for seed in seeds]
                point = {"temperature": t, "psi": psi}
                for k in per_seed[0]:
                    point[k] = sum(m[k] for m in per_seed) / len(per_seed)
                    point[f"{k}_seeds"] = [m[k] for m in per_seed]
                # NLL-test of the temperature-scaled (truncated) generator, once: it has no sampling noise
                point["nll_test"] = sampler.nll("test", temperature=t, psi=psi)["nll"]
                point["nll_test_seeds"] = [point["nll_test"]]
                points.append(point)
            out[run_dir.name][which] = points
    return out


def _mean_sd(p, k):
    vals = p[f"{k}_seeds"]
    if len(vals) < 2:
        return f"{p[k]:.4f}"
    sd = (sum((v - p[k]) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return f"{p[k]:.4f} ± {sd:.4f}"


# (quality, diversity or coverage) axes of the sweep figure, where the corpus has them
SWEEP_PANELS = [("bleu5", "self_bleu5", "BLEU-5 (quality →)", "Self-BLEU-5 (← diversity)"),
                ("nll_oracle", "nll_test", "NLL-oracle (← quality)", "NLL-test (← coverage)"),
                ("precision", "recall", "precision (quality →)", "recall (coverage →)")]


def plot_sweep(sweep: dict, title: str, path: Path) -> str:
    """Quality against diversity, one curve per generator (as in Caccia et al. 2020); returns the table."""
    first = next(iter(next(iter(sweep.values())).values()))[0]
    panels = [p for p in SWEEP_PANELS if p[0] in first and p[1] in first]
    keys = [k for k in ("bleu5", "self_bleu5", "nll_oracle", "precision", "recall", "nll_test") if k in first]
    fig = Figure(figsize=(5.0 * len(panels), 4.2))
    for j, (yk, xk, yl, xl) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for i, (run, gens) in enumerate(sweep.items()):
            for which, style, label in (("pretrained", "--o", "MLE only, T sweep"), ("ema", "-s", "GAN (EMA), T sweep"),
                                        ("ema_psi", ":^", "GAN (EMA), psi sweep")):
                pts = gens.get(which, [])
                if not pts:
                    continue
                ax.plot([p[xk] for p in pts], [p[yk] for p in pts], style, color=f"C{i}", label=f"{run}: {label}")
                for p in pts:
                    tag = f"ψ={p.get('psi', 1.0):g}" if which == "ema_psi" else f"T={p['temperature']:g}"
                    ax.annotate(tag, (p[xk], p[yk]), fontsize=6, alpha=0.7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    lines = ["| run | generator | T | psi | " + " | ".join(keys) + " | unique |",
             "|---|---|---:|---:|" + "---:|" * (len(keys) + 1)]
    for run, gens in sweep.items():
        for which, pts in gens.items():
            lines += [f"| {run} | {which} | {p['temperature']:g} | {p.get('psi', 1.0):g} | "
                      + " | ".join(_mean_sd(p, k) for k in keys) + f" | {p['unique_share']:.3f} |" for p in pts]
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return "\n".join(lines) + "\n"


def run_latent_usage(run_dir: Path, which: str, data_dir: str = "") -> float:
    """experiments.scoring.nll.latent_usage of a run's generator ("pretrained" or "ema"): the mutual
    information between z and the next token given a real prefix, nats per token, on the first 64
    val sentences with the run's 16 draws of z, the figure of its metrics.json (0 = z is ignored and
    truncation can do nothing). An estimate from 16 latents: expect differences of a factor of
    two between seeds."""
    import torch

    from datasets import DataConfig, LMData, build_tokenizer
    from experiments.scoring.nll import latent_usage as usage
    from experiments.generators.generation import load_generator
    c = json.loads((run_dir / "config.json").read_text())["train"]
    corpus = DataConfig.from_settings({**c, "data_dir": data_dir or c["data_dir"]}).load()
    gen, _, _ = load_generator(run_dir / ("pretrained.pt" if which == "pretrained" else "last.pt"),
                               torch.device("cpu"), which="ema")
    data = LMData(corpus, build_tokenizer(corpus), block_size=gen.block_size)
    x, y = next(iter(data.eval_batches("val", 64)))
    return usage(gen, x, y, n_z=16, seed=c["seed"])  # as train_gan computes it: the same z draws
