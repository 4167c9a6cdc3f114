"""The quality-diversity frontier: every way to trade quality for diversity, for the same models,
on the same axes, over training seeds.

    OMP_NUM_THREADS=1 python -m experiments.frontier --config experiments/configs/frontier/numbers.toml

A frontier config is a comparison config (experiments/compare.py: the dataset, the models and
their settings, the scorer) plus a [frontier] section (seeds, the knob values of each curve,
which models get discriminator guidance, the planes, the reference curve) and a [guide] section
(experiments/generators/guidance.py's GuideConfig: the post-hoc discriminator). For each training seed the
models are trained as the comparison trains them, into runs/<experiment>-seed<s>/ (--reuse true
loads finished runs), then each model is sampled along its curves:

    temperature  every model, T in the comparison's `temperatures`
    top-p        language models (the lm family), nucleus sampling at T = 1, p in `top_ps`
    truncation   latent generators whose latent is used (comparison.truncation_skipped), psi in the
                 comparison's `psis`
    DRS, SIR     the models in `guided`: a discriminator trained post hoc on the model's samples
                 at T = 1 (its validation accuracy and calibration go in the report), then
                 rejection sampling over `drs_gammas` and SIR (m = sir_m candidates) over `sir_alphas`

Every point is num_samples samples (sample_seed) scored by the comparison's Judge (BLEU and
Self-BLEU against test, LM score and reverse LM score when the comparison's lm_score and
reverse_lm_score are on). Over seeds each point is a mean with its seed standard deviation; the
report (table_dir) tests every point against the reference curve on each plane
(experiments/reporting/frontier.py: dominance beyond two standard deviations, interpolating the
curve) and draws each plane with error bars.

Every (seed, model) is a cell of one grid (experiments/jobs), beside one judge cell; the scorer LM
is fitted once for all, by whichever cell needs it first (the judge cache's lock): `--launcher local --jobs 4` runs four at once, `--launcher slurm` submits each
as a SLURM job. Each model's scored points are stored beside its run (frontier_points.json, with
the settings they depend on); --reuse true reads them instead of sampling again when those
settings are unchanged, so the report can be rewritten in seconds; a cell stopped midway has
stored each point as it was scored (frontier_points.partial.json) and scores only the rest. Each
trained discriminator is stored too (guide-<source>/guide.pt, with its settings and the run's
checkpoint hashes): a cell stopped after training them, or a changed point setting, reads them
instead of training again; one stopped while training one goes on from its last whole pass
through the pool (guide-<source>/guide.partial.pt) to the discriminator an unstopped one ends at.
A model's guided points draw their candidates once (guidance.Proposals: every SIR point at the
same seed proposes the same texts), and a DRS point gives up past drs_max_cost candidates per
sample (skipped, and listed in the report).
"""

from experiments.core import cli
from experiments.studies.frontier import FrontierConfig, main, parse_args  # noqa: F401  (the command's settings)

if __name__ == "__main__":
    cli.run(main)
