"""Train several generators on one dataset with one budget, score them alike, write it up.

    python -m experiments.compare --config experiments/configs/compare/numbers.toml
    python -m experiments.compare --dataset numbers --models gpt2,lstm --max_steps 500 --experiment quick

For every entry of `models`, in order: train it (or, with --reuse true, load the finished
run already in runs/<experiment>/<entry>), draw `num_samples` samples at `temperature`
from a fixed seed, and score them with the same metrics: NLL-test (per token, padding
excluded, and the padding-included text-GAN figure), BLEU-2..5 against the test split,
Self-BLEU-2..5, distinct-n, lengths, LM and reverse LM scores, NLL-oracle on `oracle`,
precision / novelty / recall on `numbers`. Then sweep temperature (and, for families with
a latent, the truncation psi). The same number of real training sentences, drawn with the
same seed, is scored the same way: the "real data" row every generator is read against.

Outputs
    runs/<experiment>/<entry>/    one TensorBoard run per model: the trainer's curves
                                  (train/loss, val/nll, eval/*), then final/* metrics,
                                  samples and the sweep as text
    runs/<experiment>/real-data/  the reference row
    runs/<experiment>/            the hparams experiment summary: TensorBoard's HPARAMS view
                                  lists every run's final/* metrics side by side
    runs/<experiment>/report/     report.md, results.json and the PNG figures (report.py); with
                                  report_dir set (the committed configs: research), there
                                  instead: report_dir/<experiment>/

Settings: CompareConfig below and the scorer LM's ScorerConfig ([scorer]), resolved as
defaults <- --config FILE <- --key=value. Per-entry trainer settings come from the
file's [models.<entry>] tables (and --models.<entry>.<key>=value); the key `family`
picks the family (default: the entry's name if it is a family, else "lm"), every other
key is passed to the family's trainer as --key=value, after the shared settings.

Families: experiments/generators/families.py (FAMILIES, name -> object; the protocol a new generator
family implements is in its docstring). Every trainer receives these shared settings (the budget is shared): every data setting
(datasets.DataConfig: dataset, split, level, mode, val_file, test_file, lowercase, min_freq,
max_vocab, max_len, data_dir), out_dir run_name seed max_steps max_minutes eval_interval
eval_samples device progress. A data setting given for one entry is refused: every model
of a comparison reads the same examples in the same tokens. It logs its curves to out_dir/run_name with the eval/ tags of
experiments/scoring/samples.py and writes metrics.json there.
"""

from experiments.studies.comparison import CompareConfig, main, parse_args  # noqa: F401  (the command's settings)
from experiments.core import cli

if __name__ == "__main__":
    cli.run(main)
