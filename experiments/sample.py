"""Print samples from a trained language model checkpoint.

    python -m experiments.sample --ckpt runs/names-gpt2/best.pt --num_samples 20 --temperature 0.8

The checkpoint alone rebuilds the model (its config and vocabulary travel with it).
The level (char or word), the vocabulary and the lowercasing are the checkpoint's, the data
settings it was trained with (datasets.DataConfig): there is no --level to get wrong here.
To score the samples against a file of yours: python -m experiments.score.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from baselines import MODELS
from baselines.sampling import generate
from datasets import BOS_ID
from datasets.tokenizers import Tokenizer
from experiments import cli, config as cfglib
from experiments import runtime
from experiments.checkpoint import CheckpointError, load_checkpoint


@dataclass
class SampleConfig:
    ckpt: str = ""              # path to a checkpoint written by experiments.train_lm
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


def load_model(path, device):
    """(model, tokenizer) rebuilt from a checkpoint file alone."""
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] == "gan":
        raise CheckpointError(f"{path} is a GAN checkpoint (written by experiments.train_gan); sample it with "
                              f"python -m experiments.sample_gan --ckpt {path}")
    if ckpt["model_name"] not in MODELS:
        raise CheckpointError(f"{path} holds model {ckpt['model_name']!r}, which this version does not register")
    model_cls, config_cls = MODELS[ckpt["model_name"]]
    model = model_cls(config_cls(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), Tokenizer.from_state(ckpt["tokenizer"])


def main(argv=None):
    config_path, pairs = cfglib.split_cli(sys.argv[1:] if argv is None else argv)
    cfg = cfglib.resolve({"sample": SampleConfig()}, cfglib.load_file(config_path) if config_path else {}, pairs)["sample"]
    if not cfg.ckpt:
        raise cfglib.ConfigError("give a checkpoint: --ckpt runs/<run>/best.pt")
    device = runtime.resolve_device(cfg.device)
    model, tokenizer = load_model(cfg.ckpt, device)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    start = torch.full((cfg.num_samples, 1), BOS_ID, dtype=torch.long, device=device)
    out = generate(model, start, cfg.max_new_tokens or model.block_size, temperature=cfg.temperature,
                   top_k=cfg.top_k or None, top_p=cfg.top_p, generator=g)
    texts = [tokenizer.decode(row[1:].tolist()) for row in out]
    for t in texts:
        print(t)
    return texts


if __name__ == "__main__":
    cli.run(main)
