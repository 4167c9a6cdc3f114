"""The generator families experiments.compare trains and scores alike (FAMILIES, name -> object):
LM, GAN, SeqGAN, RelGAN.

To plug a new generator in, add an object with
    sweeps_psi: bool                       whether psi (latent truncation) is a sweep axis
    config(argv: list[str]) -> dict        the trainer's settings resolved from --key=value
                                           without training, by config.json section ("train":
                                           a DataConfig, whose data settings must equal the
                                           comparison's; --reuse compares all of them with the
                                           finished run's config.json)
    check_budget(argv: list[str]) -> None  optional: refuse (ConfigError), without training, a
                                           max_minutes the run's final scoring alone would eat; a
                                           comparison asks it of every fresh entry before any trains
    train(argv: list[str]) -> Path         train one model from --key=value settings; the
                                           run directory (out_dir/run_name) it wrote
    is_trained(run_dir: Path) -> bool      a finished run is there (for --reuse)
    vocabulary(run_dir: Path) -> list      the vocabulary a finished run was trained on (for --reuse)
    load(run_dir, corpus, device) -> sampler
and a sampler with
    info: dict                             at least params, steps, train_seconds
    sample(n, temperature=1.0, psi=1.0, seed=0) -> list[str]   n texts, reproducible from seed
    nll(split, temperature=1.0, psi=1.0) -> dict  {"nll": per token, padding excluded,
                                           "nll_with_pad": the text-GAN figure}; a latent
                                           model returns scoring.nll.latent_nll's estimate
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from datasets import LMData, build_tokenizer
from experiments.core.checkpoint import CheckpointError, load_checkpoint, vocabulary_of
from experiments.generators.generation import gan_texts, lm_texts, load_generator, load_model
from experiments.scoring.nll import latent_nll, lm_nll
from experiments.trainers import gan as gan_trainer
from experiments.trainers import lm as lm_trainer
from experiments.trainers import recurrent_gan
from experiments.trainers import relgan as relgan_trainer
from experiments.trainers import seqgan as seqgan_trainer


def _same_vocabulary(tokenizer, corpus, where) -> None:
    if tokenizer.itos != build_tokenizer(corpus).itos:
        raise CheckpointError(f"{where} was trained on another vocabulary than {corpus.name}'s; retrain it")


def _no_psi(psi: float) -> None:
    if psi != 1.0:
        raise ValueError("a language model has no latent to truncate (psi must be 1)")


class LMSampler:
    """A trained language model (best-on-validation checkpoint) behind the sampler protocol."""

    def __init__(self, model, tokenizer, data: LMData, device, info: dict):
        self.model, self.tokenizer, self.data, self.device, self.info = model, tokenizer, data, device, info

    def sample(self, n: int, temperature: float = 1.0, psi: float = 1.0, seed: int = 0,
               batch_size: int = 500, top_p: float = 1.0) -> list[str]:
        """top_p < 1: nucleus sampling (Holtzman et al. 2020), an LM's own diversity knob."""
        _no_psi(psi)
        return lm_texts(self.model, self.tokenizer, n, self.data.block_size, temperature, top_p=top_p, seed=seed,
                        batch_size=batch_size, fixed_length=self.data.fixed_length)

    def nll(self, split: str, temperature: float = 1.0, psi: float = 1.0) -> dict:
        _no_psi(psi)
        return lm_nll(self.model, self.data.eval_batches(split, 256), self.device, temperature=temperature,
                      pad_len=self.data.block_size)


class LMFamily:
    """Every baselines.MODELS entry, trained by experiments.trainers.lm (settings: its TrainConfig and model config)."""

    sweeps_psi = False

    def config(self, argv: list[str]) -> dict:
        """The trainer's resolved settings by config.json section ("train" is a DataConfig), without training."""
        cfg, model_cfg = lm_trainer.parse_args(argv)
        return {"train": cfg, "model": model_cfg}

    def check_budget(self, argv: list[str]) -> None:
        """A max_minutes the run's final scoring alone would eat, refused without training."""
        lm_trainer.check_budget(argv)

    def train(self, argv: list[str]) -> Path:
        lm_trainer.main(argv)
        return lm_trainer.run_dir_of(self.config(argv)["train"])

    def is_trained(self, run_dir: Path) -> bool:
        return (run_dir / "metrics.json").is_file() and (run_dir / "best.pt").is_file()

    def vocabulary(self, run_dir: Path) -> list[str]:
        return vocabulary_of(load_checkpoint(run_dir / "best.pt")["tokenizer"])

    def load(self, run_dir: Path, corpus, device) -> LMSampler:
        model, tokenizer = load_model(run_dir / "best.pt", device)
        _same_vocabulary(tokenizer, corpus, run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        info = {k: metrics.get(k) for k in ("params", "steps", "train_seconds")}
        best_step = load_checkpoint(run_dir / "best.pt")["step"]
        info["scored"] = (f"best-on-validation checkpoint (best.pt, step {best_step:,} of {info['steps']:,})"
                          if info["steps"] else "fitted in closed form, no training steps (best.pt)")
        return LMSampler(model, tokenizer, LMData(corpus, tokenizer, block_size=model.block_size), device, info)


class GANSampler:
    """A trained GAN generator behind the sampler protocol, swept over temperature and psi."""

    def __init__(self, path, corpus, device, which: str = "ema", w_avg_samples: int = 4096):
        self.device = device
        self.generator, self.tokenizer, ckpt = load_generator(path, device, which)
        _same_vocabulary(self.tokenizer, corpus, path)
        self.data = LMData(corpus, self.tokenizer, block_size=self.generator.block_size)
        # K of the latent NLL estimate: the run's own setting (log-mean-exp over K draws of z and noise)
        self.nll_samples = ckpt["train_config"].get("nll_samples", 1)
        # truncation's centre: the mean w of this generator's mapping over fresh z (seed 0), once,
        # so that sample() and nll() at any psi use the same w_avg
        self.generator.mapping.estimate_w_avg(w_avg_samples, generator=torch.Generator(device=device).manual_seed(0))
        self.info = {"params": sum(p.numel() for p in self.generator.parameters()), "steps": ckpt["step"]}

    def sample(self, n: int, temperature: float = 1.0, psi: float = 1.0, seed: int = 0, batch_size: int = 500):
        gen = self.generator
        return gan_texts(gen, self.tokenizer, n, gen.block_size, temperature, psi, seed, batch_size,
                         fixed_length=self.data.fixed_length)

    def nll(self, split: str = "test", temperature: float = 1.0, psi: float = 1.0) -> dict:
        """Per-token NLL on a split (padding excluded; nll_with_pad the text-GAN figure),
        log-mean-exp over nll_samples latents from the prior (scoring.nll.latent_nll), at every
        temperature and psi alike."""
        return latent_nll(self.generator, self.data.eval_batches(split, 256), self.nll_samples, self.device,
                          seed=0, temperature=temperature, psi=psi, pad_len=self.data.block_size)


class GANFamily:
    """The GAN, trained by experiments.trainers.gan (settings: its GANTrainConfig and the [generator],
    [mapping], [discriminator] sections). The EMA generator of last.pt is what gets scored; its
    quality-diversity curve sweeps psi as well as temperature."""

    sweeps_psi = True

    def config(self, argv: list[str]) -> dict:
        """The trainer's resolved settings by config.json section ("train" is a DataConfig), without training."""
        cfg, gen_cfg, disc_cfg = gan_trainer.parse_args(argv)
        return {"train": cfg, "generator": gen_cfg, "discriminator": disc_cfg}

    def check_budget(self, argv: list[str]) -> None:
        gan_trainer.check_budget(argv)

    def train(self, argv: list[str]) -> Path:
        gan_trainer.main(argv)
        return gan_trainer.run_dir_of(self.config(argv)["train"])

    def is_trained(self, run_dir: Path) -> bool:
        return (run_dir / "metrics.json").is_file() and (run_dir / "last.pt").is_file()

    def vocabulary(self, run_dir: Path) -> list[str]:
        return vocabulary_of(load_checkpoint(Path(run_dir) / "last.pt")["tokenizer"])

    def load(self, run_dir: Path, corpus, device) -> GANSampler:
        sampler = GANSampler(Path(run_dir) / "last.pt", corpus, device)
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        sampler.info.update(steps=metrics.get("steps"), train_seconds=metrics.get("train_seconds"),
                            adv_nll_rise=metrics.get("adv_nll_rise"), latent_mi=metrics.get("ema/latent_mi"))
        sampler.info["scored"] = (f"EMA generator at the end of training (last.pt, step {metrics.get('steps') or 0:,}; "
                                  "no checkpoint selection); NLL-test is an upper bound, log-mean-exp over "
                                  f"K = {sampler.nll_samples} latents")
        return sampler


class RecurrentGANSampler(LMSampler):
    """A SeqGAN or RelGAN generator (an LSTM of baselines/) behind the sampler protocol. Its NLL is an LM's;
    its samples come from the trainers' own sampler, which keeps the corpus's sequence protocol
    (exactly fixed_length tokens and no special token on the oracles, else up to <eos>)."""

    def __init__(self, model, tokenizer, data: LMData, device, info: dict, fixed_length: int):
        super().__init__(model, tokenizer, data, device, info)
        self.fixed_length = fixed_length

    def sample(self, n: int, temperature: float = 1.0, psi: float = 1.0, seed: int = 0,
               batch_size: int = 500) -> list[str]:
        _no_psi(psi)
        return recurrent_gan.generator_texts(self.model, self.tokenizer, n, self.fixed_length or self.data.block_size,
                                             self.fixed_length, temperature, seed=seed, batch_size=batch_size)


class RecurrentGANFamily:
    """An LSTM text GAN trained by experiments.trainers.seqgan (SeqGAN, Yu et al. 2017) or
    experiments.trainers.relgan (RelGAN-style, Nie et al. 2019): settings are the trainer's
    [train], [generator] and [discriminator] sections. The generator at the end of the adversarial
    phase (last.pt) is what gets scored; it is a language model, so its NLL is exact."""

    sweeps_psi = False

    def __init__(self, trainer, unit: str):
        self.trainer, self.unit = trainer, unit  # unit: what the trainer calls an adversarial iteration

    def config(self, argv: list[str]) -> dict:
        """The trainer's resolved settings by config.json section ("train" is a DataConfig), without training."""
        cfg, gen_cfg, disc_cfg = self.trainer.parse_args(argv)
        return {"train": cfg, "generator": gen_cfg, "discriminator": disc_cfg}

    def check_budget(self, argv: list[str]) -> None:
        self.trainer.check_budget(argv)

    def train(self, argv: list[str]) -> Path:
        self.trainer.main(argv)
        return self.trainer.run_dir_of(self.config(argv)["train"])

    def is_trained(self, run_dir: Path) -> bool:
        return (run_dir / "metrics.json").is_file() and (run_dir / "last.pt").is_file()

    def vocabulary(self, run_dir: Path) -> list[str]:
        return vocabulary_of(load_checkpoint(Path(run_dir) / "last.pt")["tokenizer"])

    def load(self, run_dir: Path, corpus, device) -> RecurrentGANSampler:
        model, tokenizer = load_model(Path(run_dir) / "last.pt", device)
        _same_vocabulary(tokenizer, corpus, run_dir)
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        select = json.loads((Path(run_dir) / "config.json").read_text())["train"]["pretrain_select"]
        info = {"params": sum(p.numel() for p in model.parameters()), "steps": metrics.get("steps"),
                "train_seconds": metrics.get("train_seconds"), "adv_nll_rise": metrics.get("adv_nll_rise")}
        d_rounds = f"{metrics['d_pretrain_rounds']:,} D pretraining rounds, " if "d_pretrain_rounds" in metrics else ""
        beta = f", beta up to {metrics['beta']:.3g}" if metrics.get("beta") is not None else ""
        info["scored"] = (f"generator at the end of training (last.pt, step {metrics.get('steps') or 0:,}: "
                          f"{metrics.get('pretrain_steps', 0):,} MLE steps, then the "
                          f"{'best on validation' if select == 'val' else 'last'} generator through {d_rounds}"
                          f"{metrics.get('adv_steps', 0):,} adversarial {self.unit}{beta}; no selection after MLE)")
        return RecurrentGANSampler(model, tokenizer, LMData(corpus, tokenizer, block_size=model.block_size), device,
                                   info, fixed_length=getattr(corpus, "fixed_length", 0))


FAMILIES = {
    "lm": LMFamily(),
    "gan": GANFamily(),  # the EMA generator of experiments.trainers.gan, swept over psi too
    "seqgan": RecurrentGANFamily(seqgan_trainer, "rounds"),  # SeqGAN's generator at the end of training
    "relgan": RecurrentGANFamily(relgan_trainer, "steps"),  # the RelGAN-style generator at the end of training
}
