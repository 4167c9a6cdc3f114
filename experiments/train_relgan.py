"""Train a RelGAN-style baseline (Nie et al. 2019): an MLE-pretrained LSTM generator trained
adversarially through Gumbel-softmax samples, with an annealed inverse temperature, against a
CNN discriminator that reads soft one-hots, with the relativistic standard GAN loss.

    python -m experiments.train_relgan --config experiments/configs/relgan/numbers.toml
    python -m experiments.train_relgan --config experiments/configs/relgan/oracle.toml
    python -m experiments.train_relgan --dataset numbers --pretrain_steps 500 --adv_steps 200 --beta_max 10
    python -m experiments.train_relgan --config experiments/configs/relgan/oracle.toml --resume true

Every setting, with its default and comment: --help. The two phases (MLE pretraining of the
generator, adversarial steps) and every deviation from the paper are in
experiments/trainers/relgan.py (the comparison trains through it too, as the `relgan` family).
"""

from experiments.core import cli
from experiments.trainers.relgan import RelGANTrainConfig, main, parse_args  # noqa: F401  (the command's settings)

if __name__ == "__main__":
    cli.run(main)
