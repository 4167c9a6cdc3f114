"""Train any registered language model on any corpus.

    python -m experiments.train_lm --model gpt2 --dataset names --max_steps 20000
    python -m experiments.train_lm --config experiments/configs/lm/shakespeare_char_cpu.toml
    python -m experiments.train_lm --dataset my_corpus.txt --level word --n_layer 2
    torchrun --standalone --nproc_per_node 2 -m experiments.train_lm --config ...

Every setting, with its default and comment: --help. The loop itself is
experiments/trainers/lm.py (the comparison trains through it too).
"""

from experiments.core import cli
from experiments.trainers.lm import TrainConfig, main, parse_args  # noqa: F401  (the command's settings)

if __name__ == "__main__":
    cli.run(main)
