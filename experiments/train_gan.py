"""Train the text GAN: a style-based transformer generator against a transformer discriminator.

    python -m experiments.train_gan --config experiments/configs/gan/numbers.toml
    python -m experiments.train_gan --dataset numbers --pretrain_steps 0 --adv_steps 3000
    python -m experiments.train_gan --dataset coco --loss rsgan --beta_max 1000 --generator.n_embd 128
    python -m experiments.train_gan --config experiments/configs/gan/coco.toml --pretrain_steps 0 \\
        --init_from runs/gan/coco-gan/pretrained.pt --run_name coco-gan-b   # another adversarial phase

Every setting, with its default and comment: --help. The two phases (MLE pretraining,
then adversarial training) are experiments/trainers/gan.py (the comparison trains through
it too).
"""

from experiments.core import cli
from experiments.trainers.gan import GANTrainConfig, main, parse_args  # noqa: F401  (the command's settings)

if __name__ == "__main__":
    cli.run(main)
