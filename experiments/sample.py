"""Print samples from a trained language model checkpoint.

    python -m experiments.sample --ckpt runs/names-gpt2/best.pt --num_samples 20 --temperature 0.8
    python -m experiments.sample --ckpt checkpoints/gpt2 --num_samples 5     # a Hugging Face GPT-2 folder

The checkpoint alone rebuilds the model (its config and vocabulary travel with it).
The level (char or word), the vocabulary and the lowercasing are the checkpoint's, the data
settings it was trained with (datasets.DataConfig): there is no --level to get wrong here.
To score the samples against a file of yours: python -m experiments.score.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.core.checkpoint import load_checkpoint
from experiments.generators.generation import is_hf_folder, lm_texts, load_model


@dataclass
class SampleConfig:
    ckpt: str = ""              # a checkpoint written by experiments.train_lm, or a Hugging Face GPT-2 folder
    num_samples: int = 20
    max_new_tokens: int = 0     # 0 = up to the model's context
    temperature: float = 1.0
    top_k: int = 0              # 0 = off
    top_p: float = 1.0          # 1.0 = off
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.num_samples <= 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("need num_samples > 0, temperature > 0 and 0 < top_p <= 1")


def parse_args(argv) -> SampleConfig:
    cfg = cfglib.parse({"sample": SampleConfig()}, argv)["sample"]
    if not cfg.ckpt:
        raise cfglib.ConfigError("give a checkpoint: --ckpt runs/<run>/best.pt")
    return cfg


def main(argv=None):
    cfg = parse_args(argv)
    device = runtime.resolve_device(cfg.device)
    model, tokenizer = load_model(cfg.ckpt, device)
    # the corpus's sequence protocol travels with the checkpoint: exactly n tokens (the oracles) or up to <eos>
    fixed_length = 0 if is_hf_folder(cfg.ckpt) else load_checkpoint(cfg.ckpt).get("fixed_length", 0)
    texts = lm_texts(model, tokenizer, cfg.num_samples, cfg.max_new_tokens or model.block_size, cfg.temperature,
                     cfg.top_k, cfg.top_p, cfg.seed, fixed_length=fixed_length)
    for t in texts:
        print(t)
    return texts


if __name__ == "__main__":
    cli.run(main)
