"""Train SeqGAN (Yu et al. 2017): an LSTM generator trained by policy gradient against a CNN
discriminator, with Monte Carlo rollouts for the rewards of unfinished sequences.

    python -m experiments.train_seqgan --config experiments/configs/seqgan/numbers.toml
    python -m experiments.train_seqgan --config experiments/configs/seqgan/oracle.toml
    python -m experiments.train_seqgan --dataset numbers --pretrain_steps 500 --adv_steps 20 --n_rollouts 8
    python -m experiments.train_seqgan --config experiments/configs/seqgan/oracle.toml --resume true

Every setting, with its default and comment: --help. The three phases (MLE pretraining of the
generator, D pretraining, adversarial rounds) and every deviation from the paper are in
experiments/trainers/seqgan.py (the comparison trains through it too, as the `seqgan` family).
"""

from experiments.core import cli
from experiments.trainers.seqgan import SeqGANTrainConfig, main, parse_args  # noqa: F401  (the command's settings)

if __name__ == "__main__":
    cli.run(main)
