"""Trained generators back from their checkpoints, and decoded samples from them.

One place for what the trainers, the comparison, `sample`, `sample_gan`, `score` and the
reports all do: rebuild a model from a checkpoint file alone (its config and vocabulary
travel with it) and draw n decoded texts reproducibly from a seed. Every draw takes its
randomness from one torch.Generator seeded here, never from the global RNG, so sampling
inside a training run does not move the run's own random stream.

On a fixed-length corpus (Corpus.fixed_length = n > 0, the oracles: SeqGAN's protocol) the
callers pass fixed_length=n (LMData.fixed_length): every sample is then exactly n tokens, no
special token is ever drawn and there is no <eos>. With fixed_length=0 (every other corpus)
sampling is what it always was, random numbers included.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from baselines import MODELS
from baselines.hf_gpt2 import load_hf
from baselines.sampling import generate
from datasets import BOS_ID, EOS_ID
from datasets.tokenizers import PAD_ID, SPECIAL_IDS, UNK_ID, Tokenizer
from experiments.core.checkpoint import CheckpointError, load_checkpoint
from gan import Generator, GeneratorConfig

# the text-GAN trainers whose generator is a baselines.MODELS language model (experiments.trainers.seqgan,
# experiments.trainers.relgan): their checkpoints load, sample and score as that LM
LM_GENERATOR_RUNS = ("seqgan", "relgan")


def is_hf_folder(path) -> bool:
    """A Hugging Face model folder (config.json beside model.safetensors or pytorch_model.bin), not a
    TextDuel checkpoint file or run folder (whose config.json holds the run's settings)."""
    path = Path(path)
    return (path.is_dir() and (path / "config.json").is_file()
            and any((path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")))


def load_model(path, device):
    """(model, tokenizer) rebuilt from a checkpoint of experiments.train_lm alone, or from a Hugging
    Face GPT-2 folder (baselines/hf_gpt2.load_hf)."""
    if is_hf_folder(path):
        model, tokenizer = load_hf(path)
        return model.to(device).eval(), tokenizer
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] == "gan":
        raise CheckpointError(f"{path} is a GAN checkpoint (written by experiments.train_gan); sample it with "
                              f"python -m experiments.sample_gan --ckpt {path}")
    return model_from_checkpoint(ckpt, path, device)


def model_from_checkpoint(ckpt: dict, path, device):
    """(model, tokenizer) of a loaded LM checkpoint (load_model's second half)."""
    # a SeqGAN or RelGAN checkpoint holds a registered LM (its generator, named by ckpt["generator"])
    name = ckpt.get("generator", "") if ckpt["model_name"] in LM_GENERATOR_RUNS else ckpt["model_name"]
    if name not in MODELS:
        raise CheckpointError(f"{path} holds model {ckpt['model_name']!r}, which this version does not register")
    model_cls, config_cls = MODELS[name]
    model = model_cls(config_cls(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), Tokenizer.from_state(ckpt["tokenizer"])


def lm_checkpoint(path) -> Path:
    """Where a language model is read from: a run folder's best.pt, or the file or Hugging Face folder given."""
    path = Path(path)
    if path.is_dir() and not is_hf_folder(path):
        if not (path / "best.pt").is_file():
            raise CheckpointError(f"{path} holds neither best.pt (a run of experiments.train_lm) nor config.json "
                                  "(a Hugging Face GPT-2 folder)")
        return path / "best.pt"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: give a run folder of experiments.train_lm, one of its "
                              "checkpoints, or a Hugging Face GPT-2 folder")
    return path


def load_generator(path, device, which: str = "ema"):
    """(generator, tokenizer, checkpoint) rebuilt from a checkpoint of experiments.train_gan alone;
    which = "ema" (the averaged generator, the one train_gan evaluates) or "model" (the raw one)."""
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != "gan":
        raise CheckpointError(f"{path} holds a {ckpt['model_name']!r} model, not a GAN; use experiments.sample")
    return generator_from_checkpoint(ckpt, device, which)


def generator_from_checkpoint(ckpt: dict, device, which: str = "ema"):
    """(generator, tokenizer, checkpoint) of a loaded GAN checkpoint (load_generator's second half)."""
    gen = Generator(GeneratorConfig(**ckpt["model_config"]))
    gen.load_state_dict(ckpt["ema"] if which == "ema" else ckpt["model"])
    return gen.to(device).eval(), Tokenizer.from_state(ckpt["tokenizer"]), ckpt


def load_lm_or_generator(path, device, which: str = "ema"):
    """(model, tokenizer, checkpoint) from an LM or a GAN checkpoint, read once, or from a Hugging Face
    GPT-2 folder (checkpoint None there and for an LM); a GAN gives its generator (`which`)."""
    if is_hf_folder(path):
        return (*load_model(path, device), None)
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] == "gan":
        return generator_from_checkpoint(ckpt, device, which)
    return (*model_from_checkpoint(ckpt, path, device), None)


def banned_ids(fixed_length: int, level: str = "") -> tuple[int, ...] | None:
    """The token ids a sampler must never draw: the special tokens on a fixed-length corpus; at bpe
    level <pad>, <bos> and <unk>, which no line of any text encodes to (nothing is <unk> there, so
    a sampled one could only be an untrained model's noise); else none."""
    if fixed_length:
        return SPECIAL_IDS
    return (PAD_ID, BOS_ID, UNK_ID) if level == "bpe" else None


@torch.no_grad()
def lm_texts(model, tokenizer, n: int, max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, batch_size: int = 500, fixed_length: int = 0) -> list[str]:
    """n decoded samples of a language model, each started from <bos>; one generator across the
    batches, so the result depends on seed and n only. fixed_length > 0 (the corpus's): exactly
    fixed_length tokens each (in place of max_new_tokens), never a special token, no <eos>."""
    device = next(itertools.chain(model.parameters(), model.buffers())).device  # a counted model has buffers only
    g = torch.Generator(device=device).manual_seed(seed)
    if fixed_length:
        max_new_tokens = fixed_length
    texts = []
    for start in range(0, n, batch_size):
        idx = torch.full((min(batch_size, n - start), 1), BOS_ID, dtype=torch.long, device=device)
        out = generate(model, idx, max_new_tokens, temperature=temperature, top_k=top_k or None, top_p=top_p,
                       generator=g, eos_id=None if fixed_length else EOS_ID,
                       banned=banned_ids(fixed_length, tokenizer.level))
        texts += [tokenizer.decode(row[1:].tolist()) for row in out]
    return texts


@torch.no_grad()
def gan_texts(gen, tokenizer, n: int, max_len: int, temperature: float = 1.0, psi: float = 1.0, seed: int = 0,
              batch_size: int = 500, fixed_length: int = 0) -> list[str]:
    """n decoded sentences of a GAN generator, reproducible from seed (z, noise and tokens all
    come from one torch.Generator). psi != 1 truncates towards the mapping's w_avg, which the
    caller must have estimated (gen.mapping.estimate_w_avg). fixed_length > 0 (the corpus's):
    exactly fixed_length tokens each (in place of max_len), never a special token, no <eos>."""
    g = torch.Generator(device=gen.lm_head.weight.device).manual_seed(seed)
    if fixed_length:
        max_len = fixed_length
    texts = []
    for start in range(0, n, batch_size):
        out = gen.sample(min(batch_size, n - start), max_len, psi=psi, temperature=temperature, generator=g,
                         banned=banned_ids(fixed_length, tokenizer.level))
        texts += [tokenizer.decode(row.tolist()) for row in out["ids"]]
    return texts
