"""Export a trained GPT-2 as a Hugging Face folder that `transformers` loads.

    python -m experiments.export --run runs/mine-gpt2 --out exported/mine-gpt2
    python -c "from transformers import GPT2LMHeadModel, AutoTokenizer; \\
        m = GPT2LMHeadModel.from_pretrained('exported/mine-gpt2'); t = AutoTokenizer.from_pretrained('exported/mine-gpt2')"

Writes config.json, model.safetensors, vocab.json + merges.txt, tokenizer.json and the
tokenizer's config files (baselines/hf_gpt2.save_hf: the vocabulary shifted back to GPT-2's
ids, <eos>'s embedding row as <|endoftext|>'s, the tied embedding saved once, the position
table at its trained size). It exports the run's best checkpoint (lowest validation NLL;
--ckpt names another). Only a GPT-2 with GPT-2's vocabulary and its reading of <bos> as
<eos> exports exactly: one fine-tuned from a Hugging Face checkpoint (train_lm --hf_init).

A GAN run whose generator started from such a GPT-2 (train_gan --init_lm HFDIR, with
--generator.style_mode adaln) exports its generator's LM: the EMA generator of last.pt at the
average style and zero noise, which is a GPT-2 exactly (gan/generator.py, Generator.to_lm);
it is one member of the generator's family p(x | z), not the generator's mixture over z.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from baselines.hf_gpt2 import HFCheckpointError, save_hf
from experiments.core import cli, config as cfglib
from experiments.generators.generation import load_lm_or_generator


@dataclass
class ExportConfig:
    run: str = ""               # a run folder of experiments.train_lm (its best.pt is exported), or of
                                # train_gan --init_lm (its last.pt: the generator at its average style)
    ckpt: str = ""              # or a checkpoint file of either (best.pt, last.pt)
    out: str = ""               # the Hugging Face folder to write (created; files in it are replaced)


def parse_args(argv) -> ExportConfig:
    cfg = cfglib.parse({"export": ExportConfig()}, argv)["export"]
    if not cfg.out or not (cfg.run or cfg.ckpt):
        raise cfglib.ConfigError("give the run and the folder to write: --run runs/<run> --out exported/<name>")
    return cfg


def main(argv=None):
    cfg = parse_args(argv)
    path = Path(cfg.ckpt) if cfg.ckpt else Path(cfg.run) / "best.pt"
    if not cfg.ckpt and not path.is_file() and (Path(cfg.run) / "last.pt").is_file():
        path = Path(cfg.run) / "last.pt"  # a GAN run keeps no best.pt: its final generator
    model, tokenizer, ckpt = load_lm_or_generator(path, "cpu")
    if ckpt is not None:  # a GAN: its generator's LM
        try:
            model = model.to_lm()
        except ValueError as e:
            raise HFCheckpointError(f"{path}: {e}") from None
    if type(model).__name__ != "GPT" or tokenizer.level != "bpe":
        raise HFCheckpointError(f"{path} holds a {type(model).__name__} at {tokenizer.level} level; a Hugging Face "
                                "GPT-2 folder holds a GPT-2 over a byte-level BPE: export a run of train_lm --hf_init "
                                "(or of train_gan --init_lm from one)")
    out = save_hf(model, tokenizer, cfg.out)
    print(f"wrote {out} (config.json, model.safetensors, tokenizer files): {model.config.n_layer} layers x "
          f"{model.config.n_embd}, vocabulary {tokenizer.vocab_size - 4:,}, context {model.config.block_size}")
    return out


if __name__ == "__main__":
    cli.run(main)
