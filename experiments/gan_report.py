"""Figures and tables of GAN runs (experiments/train_gan.py), from their recorded data.

    python -m experiments.gan_report --runs runs/gan/numbers-gan,runs/gan/numbers-gan-adv-only \\
        --tags eval/precision,eval/unique_share,val/nll --name numbers --out_dir research/gan

For every run: the curves of `tags` against step, read back from the run's TensorBoard
events (EventAccumulator, never text logs), with the end of MLE pretraining marked; and a
table of the run's metrics.json, the EMA generator at the end beside the same generator
after MLE pretraining only (`pretrained/*`, the best-on-validation generator the
adversarial phase started from), at the same sampling settings. Writes <name>.png and
<name>.md (the table) into out_dir.

With `--temperatures 0.8,0.9,1.0`, both generators of every run are also sampled at each
temperature, and with `--psis 0.5,0.7,0.9` the EMA generator at each truncation psi
(num_samples samples per seed of `seeds`, scored by experiments/scoring/samples.py), drawn as
quality-diversity curves into <name>_temperature.png (table in <name>.md): does the
adversarial phase do more than a lower temperature would do to the MLE generator
(Caccia et al. 2020, "Language GANs Falling Short")?
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from experiments.core import cli, config as cfglib
from experiments.core.checkpoint import write_text
from experiments.reporting.gan_figures import plot, plot_sweep, run_latent_usage, table, temperature_sweep


@dataclass
class ReportConfig:
    runs: str = ""                 # comma-separated run directories written by train_gan
    tags: str = "val/nll,eval/unique_share"  # comma-separated TensorBoard scalar tags to plot
    name: str = "gan"              # file stem of the figure and the table
    out_dir: str = "research/gan"
    temperatures: str = ""         # comma-separated temperatures of the sweep of both generators; "" = none
    psis: str = ""                 # comma-separated truncation psi of a sweep of the EMA generator at T = 1; "" = none
    num_samples: int = 1000        # samples per sweep point and seed
    seeds: str = "0"               # comma-separated sampling seeds of the sweep; the points are their means
    reuse_sweep: bool = False      # redraw the sweep's figure and table from out_dir/<name>_sweep.json
    data_dir: str = ""             # where real corpora are found (else $TEXTDUEL_DATA_DIR)


def parse_args(argv) -> ReportConfig:
    return cfglib.parse({"report": ReportConfig()}, argv)["report"]


def main(argv=None):
    cfg = parse_args(argv)
    runs = [Path(r.strip()) for r in cfg.runs.split(",") if r.strip()]
    if not runs:
        raise cfglib.ConfigError("give at least one run directory: --runs runs/gan/<run>[,...]")
    tags = [t.strip() for t in cfg.tags.split(",") if t.strip()]
    out = Path(cfg.out_dir)
    plot(runs, tags, cfg.name, out / f"{cfg.name}.png")
    text = table(runs)
    text += ("\nUse of the latent, I(z; x_t | x_<t) on real val prefixes in nats per token (experiments.scoring.nll.latent_usage; "
             "0 = z is ignored): "
             + "; ".join(f"{r.name} {w} {run_latent_usage(r, w, cfg.data_dir):.2e}"
                         for r in runs for w in ("pretrained", "ema")
                         if (r / ("pretrained.pt" if w == "pretrained" else "last.pt")).is_file()) + "\n")
    if cfg.temperatures.strip() or cfg.psis.strip():
        temperatures = [float(t) for t in cfg.temperatures.split(",") if t.strip()]
        psis = [float(p) for p in cfg.psis.split(",") if p.strip()]
        seeds = [int(x) for x in cfg.seeds.split(",") if x.strip()]
        cached = out / f"{cfg.name}_sweep.json"
        if cfg.reuse_sweep and cached.is_file():
            sweep = json.loads(cached.read_text())
        else:
            sweep = temperature_sweep(runs, temperatures, cfg.num_samples, cfg.data_dir, seeds, psis)
        text += (f"\nTemperature sweep of both generators, truncation sweep of the EMA generator ({cfg.num_samples} samples per point and seed; mean "
                 f"± standard deviation over seeds {', '.join(map(str, seeds))}):\n\n")
        text += plot_sweep(sweep, f"{cfg.name}: MLE-only vs adversarially trained generator",
                           out / f"{cfg.name}_temperature.png")
        write_text(out / f"{cfg.name}_sweep.json", json.dumps(sweep, indent=2))
    write_text(out / f"{cfg.name}.md", text)
    print(text)
    print(f"wrote {out / (cfg.name + '.png')} and {out / (cfg.name + '.md')}")


if __name__ == "__main__":
    cli.run(main)
