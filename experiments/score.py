"""Score any samples file against a references file, under exactly TextDuel's metrics.

    python -m experiments.score --samples my_samples.txt --references image_coco_test.txt --level word
    python -m experiments.score --samples seqgan_out.txt --references image_coco_test.txt \\
        --train image_coco.txt --json scores.json
    python -m experiments.score --samples s.txt --references image_coco_test.txt --ckpt runs/coco-gpt2/best.pt

The samples may come from TextDuel or from any other project (SeqGAN, RelGAN, ...): one
sample a line, an empty line being an empty sample (a trailing newline at the end of
the file is not a sample). References: one a line, empty lines dropped. Byte-order marks
and control characters are removed from every file read (datasets.corpora.read_lines).

Tokens: without --ckpt, the `level` tokenizer's split (word: words and punctuation
marks; char: characters), lowercased with --lowercase true; with --ckpt, the
checkpoint's own tokenizer (its level and lowercase setting; a bpe checkpoint's text is split
into words, or characters with --level char, never into its subword pieces). Samples, references and
the training file are all split the same way, the literal "<unk>" (what a TextDuel
model writes for an unknown word) being one token (experiments.scoring.samples.SampleTokenizer).

Figures (computed by experiments.scoring.samples.SampleEvaluator and experiments.scoring.metrics):

    bleu2 .. bleu5            mean over samples of sentence BLEU-n against the WHOLE references
                              set (the text-GAN protocol of Texygen): nltk's sentence_bleu,
                              uniform weights, SmoothingFunction().method1, averaged over
                              samples; equal to nltk's to the last bit (experiments/scoring/metrics.py)
    self_bleu2 .. self_bleu5  the same, each sample against all OTHER samples (never itself)
    distinct1, distinct2      unique n-grams / n-grams over all samples
    unique_share              distinct sample lines / samples
    length_mean, length_std, length_min, length_max
                              sample lengths in tokens (std: population)
    length_tv                 total-variation distance of sample lengths from reference lengths
    novelty                   (--train) share of samples whose tokens equal no training line's
    nll                       (--ckpt) NLL per token, in nats, of the checkpoint's model on the
                              reference lines: padding excluded, <eos> included, a word
                              outside its vocabulary scored as <unk>. For a GAN checkpoint
                              (EMA generator) it is scoring.nll.latent_nll, a log-mean-exp over
                              nll_K latents from the prior: an UPPER bound on the NLL
    nll_bpb                   (--ckpt) the same summed NLL in bits per byte of the reference lines
                              (UTF-8 bytes, lowercased where the tokenizer is, + 1 per line):
                              comparable across char, word and BPE models (a lower bound for a
                              word model when nll_oov_rate > 0)
    nll_oov_rate              (--ckpt) share of reference tokens (<eos> not counted) that are
                              <unk> under the checkpoint's vocabulary
    nll_K                     (GAN checkpoint) the K of that estimate
    n_samples, n_references   how many lines were scored

--json FILE writes {"settings": ..., "metrics": ...} (metrics = what main() returns).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets.batching import SequenceSplit, unk_share
from datasets.corpora import Corpus, CorpusError, read_lines
from datasets.tokenizers import SPECIALS, TOKENIZERS
from experiments.core import cli
from experiments.core import config as cfglib
from experiments.core import runtime
from experiments.core.checkpoint import write_text
from experiments.generators.generation import load_lm_or_generator
from experiments.scoring.nll import bits_per_byte, latent_nll, lm_nll
from experiments.scoring.metrics import length_stats, novelty
from experiments.scoring.samples import SampleEvaluator


@dataclass
class ScoreConfig:
    samples: str = ""           # samples file: one sample a line, an empty line is an empty sample (required)
    references: str = ""        # references file: the BLEU references (all of them) and the NLL lines (required)
    train: str = ""             # training file; adds novelty (share of samples equal to no training line)
    level: str = ""             # "" | char | word; "" = word, or the checkpoint's level with --ckpt (a bpe
                                # checkpoint's text is split into --level's words or characters, "" = word)
    lowercase: bool = False     # lowercase before splitting (without --ckpt; with it the checkpoint's setting)
    ckpt: str = ""              # a TextDuel LM (best.pt/last.pt) or GAN (last.pt/pretrained.pt) checkpoint, or a
                                # Hugging Face GPT-2 folder; adds nll
    nll_samples: int = 0        # GAN only: K latents of the NLL estimate; 0 = the checkpoint's nll_samples (else 1)
    batch_size: int = 256       # reference lines per NLL batch
    seed: int = 0               # GAN only: seed of the latents drawn for the NLL
    device: str = "auto"        # auto (cuda > mps > cpu) | cpu | cuda | mps
    json: str = ""              # write settings and figures to this JSON file (atomically)

    def __post_init__(self):
        if self.level not in ("", "char", "word"):
            raise ValueError(f"level must be '', 'char' or 'word', got {self.level!r}")
        if self.nll_samples < 0 or self.batch_size <= 0:
            raise ValueError(f"need nll_samples >= 0 and batch_size > 0, got {self.nll_samples}, {self.batch_size}")


def parse_args(argv) -> ScoreConfig:
    cfg = cfglib.parse({"score": ScoreConfig()}, argv)["score"]
    if not cfg.samples or not cfg.references:
        raise cfglib.ConfigError("give both files: --samples my_samples.txt --references references.txt")
    return cfg


# ---------------------------------------------------------------------------------------
# the model and the tokenizer


def load_scorer(path, device, which: str = "ema"):
    """(model, tokenizer, K) from a checkpoint: K is None for an LM, the latent NLL's
    default K (the run's nll_samples, else 1) for a GAN, whose EMA generator is scored."""

    model, tokenizer, ckpt = load_lm_or_generator(path, device, which)
    return model, tokenizer, None if ckpt is None else ckpt.get("train_config", {}).get("nll_samples", 1)


def resolve_tokenizer(cfg: ScoreConfig, ckpt_tokenizer=None):
    """The tokenizer every file is split with: the checkpoint's, or a `level` one.

    Without a checkpoint only the split rule matters (BLEU and friends compare tokens,
    not ids), so the tokenizer holds the special tokens alone."""
    if ckpt_tokenizer is None:
        return TOKENIZERS[cfg.level or "word"](list(SPECIALS), lowercase=cfg.lowercase)
    if cfg.level and cfg.level != ckpt_tokenizer.level and ckpt_tokenizer.level != "bpe":
        raise cfglib.ConfigError(f"--level {cfg.level} contradicts the checkpoint {cfg.ckpt}, whose tokenizer is "
                                 f"{ckpt_tokenizer.level}-level; drop --level (the checkpoint's is used)")
    if cfg.lowercase and not ckpt_tokenizer.lowercase:
        raise cfglib.ConfigError(f"--lowercase true contradicts the checkpoint {cfg.ckpt}, whose tokenizer keeps "
                                 "case; with --ckpt the checkpoint's tokenizer is used as it is")
    return ckpt_tokenizer


# ---------------------------------------------------------------------------------------
# figures


def sample_figures(samples: list[str], references: list[str], train: list[str] | None, tokenizer,
                   name: str = "references", text_level: str = "") -> dict:
    """Every figure that needs no model: SampleEvaluator's, length statistics, novelty. A bpe
    tokenizer's text is split into text_level's words or characters ("" = words)."""
    corpus = Corpus(name=name, level=tokenizer.level, mode="sequence", train=train or [], val=[], test=references,
                    lowercase=tokenizer.lowercase, text_level=text_level or "word")
    # references="test" explicitly: the BLEU references are the references file, whatever the default
    evaluator = SampleEvaluator(corpus, tokenizer, references="test")
    out = evaluator.score(samples)
    toks = [evaluator.tokenizer.split(s) for s in samples]
    stats = length_stats(toks)
    out.update(length_std=stats["std"], length_min=stats["min"], length_max=stats["max"])
    if train is not None:
        out["novelty"] = novelty(toks, (evaluator.tokenizer.split(t) for t in train))
    return out


def reference_nll(model, tokenizer, references: list[str], K: int | None, device, batch_size: int,
                  seed: int = 0) -> dict:
    """nll (per token, padding excluded, <eos> included) and nll_oov_rate of the reference
    lines under a checkpoint's model; for a GAN (K given) latent_nll over K latents, and nll_K."""
    ids = [tokenizer.encode(line) for line in references]
    too_long = [len(i) + 1 for i in ids if len(i) + 1 > model.block_size]  # + <eos> (targets) or <bos> (inputs)
    if too_long:
        raise CorpusError(f"{len(too_long)} of {len(references)} reference lines are longer than the model's "
                          f"block_size {model.block_size} (the longest needs {max(too_long)} positions, tokens + "
                          "<eos>); the model cannot score them. Drop them from the references file, or score "
                          "without --ckpt")
    oov = unk_share([t for i in ids for t in i])
    split = SequenceSplit(references, tokenizer, model.block_size, encoded=ids)  # encoded once, above
    batches = split.batches(batch_size)
    nll = lm_nll(model, batches, device) if K is None else latent_nll(model, batches, K, device, seed=seed)
    # one scale across vocabularies: the references' bytes (lowercased where the tokenizer lowercases)
    texts = [t.lower() for t in references] if tokenizer.lowercase else references
    out = {"nll": nll["nll"], "nll_bpb": bits_per_byte(nll["nll"] * nll["tokens"], texts), "nll_oov_rate": oov}
    return out if K is None else {**out, "nll_K": K}


# ---------------------------------------------------------------------------------------
# output


def format_table(figures: dict, header: list[str]) -> str:
    """One figure a line, `name  value`: floats to 4 decimals, counts as integers."""
    width = max(len(k) for k in figures) + 2
    lines = list(header)
    for name, value in figures.items():
        lines.append(f"{name:<{width}}{value:.4f}" if isinstance(value, float) else f"{name:<{width}}{value}")
    if "nll_K" in figures:
        lines.append(f"(GAN: nll is an upper bound, a log-mean-exp over K = {figures['nll_K']} latents from the prior)")
    return "\n".join(lines)


ORDER = ("n_samples", "n_references", "bleu2", "bleu3", "bleu4", "bleu5", "self_bleu2", "self_bleu3", "self_bleu4",
         "self_bleu5", "distinct1", "distinct2", "unique_share", "length_mean", "length_std", "length_min",
         "length_max", "length_tv", "novelty", "nll", "nll_bpb", "nll_oov_rate", "nll_K")


def main(argv=None) -> dict:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    samples = read_lines(cfg.samples, keep_empty=True, what="samples file")
    if len(samples) < 2:
        raise CorpusError(f"samples file {cfg.samples} holds only {len(samples)} sample; self-BLEU compares "
                          "samples with each other, so give at least 2")
    references = read_lines(cfg.references, what="references file")
    train = read_lines(cfg.train, what="training file") if cfg.train else None
    model = None
    if cfg.ckpt:
        device = runtime.resolve_device(cfg.device)
        model, ckpt_tokenizer, K = load_scorer(cfg.ckpt, device)
        tokenizer = resolve_tokenizer(cfg, ckpt_tokenizer)
        if K is not None and cfg.nll_samples:  # a GAN, and K given on the command line
            K = cfg.nll_samples
    else:
        tokenizer = resolve_tokenizer(cfg)
    found = sample_figures(samples, references, train, tokenizer, name=Path(cfg.references).stem,
                           text_level=cfg.level)
    found.update(n_samples=len(samples), n_references=len(references))
    if model is not None:
        found.update(reference_nll(model, tokenizer, references, K, device, cfg.batch_size, cfg.seed))
    figures = {k: found[k] for k in ORDER if k in found}
    empty = sum(not s for s in samples)
    print(format_table(figures, [
        f"samples     {cfg.samples} ({len(samples)} lines, {empty} empty)",
        f"references  {cfg.references} ({len(references)} lines)",
        f"tokens      {tokenizer.level} level"
        + (f" (BLEU and friends on its {cfg.level or 'word'}s)" if tokenizer.level == "bpe" else "")
        + f", lowercase {tokenizer.lowercase}" + (f", from {cfg.ckpt}" if cfg.ckpt else ""), ""]))
    if cfg.json:
        settings = {**asdict(cfg), "level": tokenizer.level, "lowercase": tokenizer.lowercase}
        write_text(cfg.json, json.dumps({"settings": settings, "metrics": figures}, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    cli.run(main)
