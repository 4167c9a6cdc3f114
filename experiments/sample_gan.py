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

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from datasets import LMData, build_tokenizer
from datasets.tokenizers import Tokenizer
from experiments import cli, config as cfglib
from experiments import runtime, train_gan
from experiments.checkpoint import CheckpointError, load_checkpoint
from experiments.evaluate import latent_nll
from experiments.train_gan import sample_texts
from gan import Generator, GeneratorConfig


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


def load_generator(path, device, which: str = "ema"):
    """(generator, tokenizer, checkpoint) rebuilt from a train_gan checkpoint file alone."""
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != "gan":
        raise CheckpointError(f"{path} holds a {ckpt['model_name']!r} model, not a GAN; use experiments.sample")
    gen = Generator(GeneratorConfig(**ckpt["model_config"]))
    gen.load_state_dict(ckpt["ema"] if which == "ema" else ckpt["model"])
    return gen.to(device).eval(), Tokenizer.from_state(ckpt["tokenizer"]), ckpt


class GANSampler:
    """A trained generator behind experiments.compare's sampler protocol:
    info, sample(n, temperature, psi, seed) -> list[str], nll(split, temperature, psi) -> dict."""

    def __init__(self, path, corpus, device, which: str = "ema", w_avg_samples: int = 4096):
        self.device = device
        self.generator, self.tokenizer, ckpt = load_generator(path, device, which)
        if self.tokenizer.itos != build_tokenizer(corpus).itos:
            raise CheckpointError(f"{path} was trained on another vocabulary than {corpus.name}'s; retrain it")
        self.data = LMData(corpus, self.tokenizer, block_size=self.generator.block_size)
        # K of the latent NLL estimate: the run's own setting (log-mean-exp over K draws of z and noise)
        self.nll_samples = ckpt["train_config"].get("nll_samples", 1)
        # truncation's centre: the mean w of this generator's mapping over fresh z (seed 0), once,
        # so that sample() and nll() at any psi use the same w_avg
        self.generator.mapping.estimate_w_avg(w_avg_samples, generator=torch.Generator(device=device).manual_seed(0))
        self.info = {"params": sum(p.numel() for p in self.generator.parameters()), "steps": ckpt["step"]}

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, psi: float = 1.0, seed: int = 0, batch_size: int = 500):
        gen = self.generator
        return sample_texts(gen, self.tokenizer, n, gen.block_size, temperature, psi, seed, batch_size)

    def nll(self, split: str = "test", temperature: float = 1.0, psi: float = 1.0) -> dict:
        """Per-token NLL on a split (padding excluded; nll_with_pad the text-GAN figure),
        log-mean-exp over nll_samples latents from the prior (evaluate.latent_nll), at every
        temperature and psi alike."""
        return latent_nll(self.generator, self.data.eval_batches(split, 256), self.nll_samples, self.device,
                          seed=0, temperature=temperature, psi=psi, pad_len=self.data.block_size)


class GANFamily:
    """experiments.compare's family for the GAN, trained by experiments.train_gan (settings: its
    GANTrainConfig and the [generator], [mapping], [discriminator] sections). The EMA generator
    of last.pt is what gets scored; its quality-diversity curve sweeps psi as well as temperature."""

    sweeps_psi = True

    def config(self, argv: list[str]) -> dict:
        """The trainer's resolved settings by config.json section ("train" is a DataConfig), without training."""
        cfg, gen_cfg, disc_cfg = train_gan.parse_args(argv)
        return {"train": cfg, "generator": gen_cfg, "discriminator": disc_cfg}

    def train(self, argv: list[str]) -> Path:
        cfg = self.config(argv)["train"]
        train_gan.main(argv)
        return Path(cfg.out_dir) / (cfg.run_name or f"{Path(cfg.dataset).stem}-gan")

    def is_trained(self, run_dir: Path) -> bool:
        return (run_dir / "metrics.json").is_file() and (run_dir / "last.pt").is_file()

    def vocabulary(self, run_dir: Path) -> list[str]:
        return load_checkpoint(Path(run_dir) / "last.pt")["tokenizer"]["itos"]

    def load(self, run_dir: Path, corpus, device) -> GANSampler:
        sampler = GANSampler(Path(run_dir) / "last.pt", corpus, device)
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        sampler.info.update(steps=metrics.get("steps"), train_seconds=metrics.get("train_seconds"),
                            adv_nll_rise=metrics.get("adv_nll_rise"))
        sampler.info["scored"] = (f"EMA generator at the end of training (last.pt, step {metrics.get('steps') or 0:,}; "
                                  "no checkpoint selection); NLL-test is an upper bound, log-mean-exp over "
                                  f"K = {sampler.nll_samples} latents")
        return sampler


def main(argv=None):
    config_path, pairs = cfglib.split_cli(sys.argv[1:] if argv is None else argv)
    file_values = cfglib.load_file(config_path) if config_path else {}
    cfg = cfglib.resolve({"sample": SampleGANConfig()}, file_values, pairs)["sample"]
    if not cfg.ckpt:
        raise cfglib.ConfigError("give a checkpoint: --ckpt runs/<run>/last.pt")
    device = runtime.resolve_device(cfg.device)
    gen, tokenizer, _ = load_generator(cfg.ckpt, device, cfg.which)
    if cfg.psi != 1.0:  # the average style of this generator, from a fixed seed
        gen.mapping.estimate_w_avg(cfg.w_avg_samples, generator=torch.Generator(device=device).manual_seed(cfg.seed))
    texts = sample_texts(gen, tokenizer, cfg.num_samples, gen.block_size, cfg.temperature, cfg.psi, cfg.seed)
    for t in texts:
        print(t)
    return texts


if __name__ == "__main__":
    cli.run(main)
