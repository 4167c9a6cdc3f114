"""Training diagnostics: the plots makemore part 3 (Karpathy 2022, "Building makemore
Part 3: Activations & Gradients, BatchNorm") draws by hand, done once for every model.

    python -m experiments.train_lm --config experiments/configs/lm/names_mlp.toml --diagnostics_interval 500
    python -m experiments.diagnostics --run runs/names-mlp                  # figures from the recorded TensorBoard data
    python -m experiments.diagnostics --ckpt runs/names-mlp/last.pt         # fresh forward/backward on a training batch

What is measured, at every `diagnostics_interval`-th optimizer step of experiments.train_lm
(computed by experiments/scoring/probes.py, drawn by experiments/reporting/diagnostic_figures.py):
- activations: for every module of interest (the `PROBES` table: embeddings, linear
  layers, tanh, sigmoid, rectifiers, BatchNorm, LayerNorm, attention, the recurrent
  cells), the mean, std and saturation of its output over the whole batch (every
  position and, for a recurrent cell called once per time step, every step), and a
  histogram. Saturation depends on the kind of output (`saturation`):
    tanh (nn.Tanh, the hidden state of the RNN/GRU/LSTM cells, all in [-1, 1]):
        share of |a| > 0.97, the lecture's threshold (tanh' = 1 - a^2 < 0.06 there);
    sigmoid: share of a < 0.03 or a > 0.97 (sigmoid' < 0.03);
    rectifier (ReLU, GELU): share of a <= 0, the flat side (for ReLU: units passing no gradient);
    unbounded (linear, embedding, BatchNorm, LayerNorm, attention outputs): share of values
        more than 3 standard deviations from the layer's mean (0.27% for a Gaussian; a
        larger tail means outlier features that saturate what follows). Mean and std are
        exact; on outputs larger than HISTOGRAM_VALUES per call this share and the
        histogram come from an even subsample.
- gradients, after clipping (the gradient the optimizer uses): the std and a histogram
  for every parameter, and the grad:data ratio std(grad) / std(weight) of every 2-D weight.
- the update:data ratio of every 2-D weight, log10(std(W_after - W_before) / std(W_before)),
  from the actual change across the optimizer step (AdamW's update, weight decay
  included), so it is right for any optimizer; about -3 is the lecture's rule of thumb.

TensorBoard tags: activation/{mean,std,saturation}/<layer> (scalars), activation/<kind>/<layer>
(histogram), gradient/std/<param>, gradient/<param> (histogram), ratio/grad_data/<param>,
ratio/update_data/<param>. Layer and parameter names are those of `named_modules()` and
`named_parameters()`.

Forward hooks exist only while a diagnostics step runs: `Diagnostics.start()` registers
them and `before_step()` removes them, so the other steps run the bare model (and are
the only ones in the trainer's ms_per_step). A module type not in `PROBES` is not
watched; a model that should show an activation uses a module for it (nn.Tanh rather
than torch.tanh). Under torch.compile (CUDA), adding hooks changes the traced graph:
collect diagnostics with compile off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.core.checkpoint import load_checkpoint
from experiments.reporting.diagnostic_figures import figures_from_recorded, read_recorded
from experiments.scoring.probes import stats_from_checkpoint, stats_to_recorded


@dataclass
class DiagnosticsConfig:
    run: str = ""           # a run directory with TensorBoard events (train_lm --diagnostics_interval N)
    ckpt: str = ""          # or a checkpoint: one fresh forward/backward on a training batch, plus its run's events
    out: str = ""           # folder for the figures; default <run>/diagnostics
    batch_size: int = 32    # --ckpt: rows of the training batch
    seed: int = 0           # --ckpt: which training batch
    data_dir: str = ""      # --ckpt: where the corpus is found (else the checkpoint's, $TEXTDUEL_DATA_DIR, ...)
    device: str = "cpu"

    def __post_init__(self):
        if self.run and self.ckpt:
            raise ValueError("give one of --run runs/<run> or --ckpt runs/<run>/last.pt, not both")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def parse_args(argv) -> DiagnosticsConfig:
    cfg = cfglib.parse({"diagnostics": DiagnosticsConfig()}, argv)["diagnostics"]
    if not (cfg.run or cfg.ckpt):
        raise cfglib.ConfigError("give --run runs/<run> (recorded diagnostics) or --ckpt runs/<run>/last.pt")
    return cfg


def main(argv=None) -> list[Path]:
    cfg = parse_args(argv)
    run_dir = Path(cfg.run) if cfg.run else Path(cfg.ckpt).parent
    out = Path(cfg.out) if cfg.out else run_dir / "diagnostics"
    has_events = any(run_dir.glob("events.out.tfevents.*"))
    recorded = read_recorded(run_dir) if has_events else {"scalars": {}, "histograms": {}}
    if cfg.ckpt:
        # distributions and current statistics from the checkpoint; the histories (the
        # update:data ratio needs optimizer steps) from the run's recorded events, if any
        step = load_checkpoint(cfg.ckpt).get("step", 0)
        current = stats_to_recorded(stats_from_checkpoint(cfg.ckpt, cfg.batch_size, cfg.seed, cfg.data_dir,
                                                          runtime.resolve_device(cfg.device)), step)
        written = figures_from_recorded(current, out, f"{Path(cfg.ckpt).name} (step {step}):",
                                        history=recorded["scalars"])
    else:
        if not recorded["histograms"] and not recorded["scalars"]:
            raise SystemExit(f"{run_dir} has no recorded diagnostics; train with --diagnostics_interval N, "
                             f"or use --ckpt {run_dir}/last.pt")
        written = figures_from_recorded(recorded, out, f"{run_dir.name}:")
    if not written:
        print("nothing to plot: the model has no probed modules or parameters")
    for p in written:
        print(p)
    return written


if __name__ == "__main__":
    cli.run(main)
