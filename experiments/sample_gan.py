"""Sample from a GAN checkpoint written by experiments.train_gan, with truncation and temperature.

    python -m experiments.sample_gan --ckpt runs/numbers-gan/last.pt --num_samples 10 --psi 0.7
    python -m experiments.sample_gan --ckpt runs/numbers-gan/pretrained.pt --which model --temperature 0.8

The checkpoint alone rebuilds the generator (its config and vocabulary travel with it).
The level (char or word), the vocabulary and the lowercasing are the checkpoint's, the data
settings it was trained with (datasets.DataConfig): there is no --level to get wrong here.
To score the samples against a file of yours: python -m experiments.score.
`--which ema` (default) samples the EMA generator, the one train_gan evaluates; `model`
the raw generator (in pretrained.pt the two are the same: no averaging while pretraining).

Truncation (StyleGAN): w' = w_avg + psi * (w - w_avg). w_avg is re-estimated from
w_avg_samples fresh z under a fixed seed before sampling with psi != 1, so the result
does not depend on the running average's history. Temperature divides the logits of
every step, as in the LMs' sampler. The two knobs trace the GAN's quality-diversity
curve (experiments.compare).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.generators.generation import gan_texts, load_generator


@dataclass
class SampleGANConfig:
    ckpt: str = ""              # a checkpoint written by experiments.train_gan (last.pt or pretrained.pt)
    which: str = "ema"          # ema | model: the EMA generator or the raw one
    num_samples: int = 20
    temperature: float = 1.0
    psi: float = 1.0            # truncation psi; 1 = none, 0 = the average style for every z
    w_avg_samples: int = 4096   # z drawn to estimate w_avg when psi != 1
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.which not in ("ema", "model"):
            raise ValueError(f"which must be 'ema' or 'model', got {self.which!r}")
        if self.num_samples <= 0 or self.temperature <= 0 or self.w_avg_samples <= 0:
            raise ValueError("need num_samples > 0, temperature > 0 and w_avg_samples > 0")


def parse_args(argv) -> SampleGANConfig:
    cfg = cfglib.parse({"sample": SampleGANConfig()}, argv)["sample"]
    if not cfg.ckpt:
        raise cfglib.ConfigError("give a checkpoint: --ckpt runs/<run>/last.pt")
    return cfg


def main(argv=None):
    cfg = parse_args(argv)
    device = runtime.resolve_device(cfg.device)
    gen, tokenizer, ckpt = load_generator(cfg.ckpt, device, cfg.which)
    if cfg.psi != 1.0:  # the average style of this generator, from a fixed seed
        gen.mapping.estimate_w_avg(cfg.w_avg_samples, generator=torch.Generator(device=device).manual_seed(cfg.seed))
    texts = gan_texts(gen, tokenizer, cfg.num_samples, gen.block_size, cfg.temperature, cfg.psi, cfg.seed,
                      fixed_length=ckpt.get("fixed_length", 0))  # the corpus's sequence protocol
    for t in texts:
        print(t)
    return texts


if __name__ == "__main__":
    cli.run(main)
