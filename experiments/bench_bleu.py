"""Benchmark: fast text-GAN BLEU / self-BLEU (experiments.scoring.metrics) against nltk.

References are the 10,000 captions of image_coco_test.txt; the hypotheses are the first
--n-hyps lines of image_coco.txt (the training captions, standing in for generated
samples). Lines are split on whitespace. nltk is timed on a small subset, one
sentence_bleu call per hypothesis and per n as Texygen does, and extrapolated; on that
subset both implementations must agree. Run from the repo root:

    python -m experiments.bench_bleu [--data_dir DIR] [--n_hyps 2000]

The two files are looked up as every corpus is (datasets/corpora.py): in --data_dir, else
$TEXTDUEL_DATA_DIR, else the download cache, where they are fetched (checksum verified) when
missing; offline, the message names the file to place by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nltk.translate.bleu_score  # noqa: F401  (imported before timing: its ~1 s is not part of nltk's figure)

from datasets.corpora import FILES, resolve_file
from experiments.core import cli, config as cfglib
from experiments.core.budget import timed
from experiments.scoring.metrics import DEFAULT_NS, BleuReference, nltk_bleu_scores, self_bleu


@dataclass
class BenchBleuConfig:
    data_dir: str = ""        # folder with image_coco.txt and image_coco_test.txt
                              # ("" = $TEXTDUEL_DATA_DIR, else the download cache)
    n_hyps: int = 2000        # hypotheses (and self-BLEU samples)
    n_nltk: int = 20          # hypotheses nltk is timed on for BLEU
    n_nltk_self: int = 5      # hypotheses nltk is timed on for self-BLEU
    n_check_self: int = 100   # samples on which self_bleu is checked in full against the naive nltk loop

    def __post_init__(self):
        for name in ("n_hyps", "n_nltk", "n_nltk_self", "n_check_self"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def load_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def parse_args(argv) -> BenchBleuConfig:
    return cfglib.parse({"bench_bleu": BenchBleuConfig()}, argv)["bench_bleu"]


def main(argv=None):
    cfg = parse_args(argv)
    refs_file = resolve_file(FILES["coco_test"], cfg.data_dir or None)
    refs = load_lines(refs_file)
    hyps = load_lines(resolve_file(FILES["coco_train"], cfg.data_dir or None))[: cfg.n_hyps]
    n_hyps = len(hyps)

    # --- BLEU against the test set
    table, t_build = timed(BleuReference, refs, max(DEFAULT_NS))
    scores, t_score = timed(table.corpus_scores, hyps, DEFAULT_NS)
    subset = hyps[: cfg.n_nltk]
    n_self = min(cfg.n_nltk_self, n_hyps)
    nltk_sub, t_nltk = timed(lambda: [nltk_bleu_scores(refs, h) for h in subset])
    fast_sub = [table.sentence_scores(h, DEFAULT_NS) for h in subset]
    diff = max(abs(f[n] - g[n]) for f, g in zip(fast_sub, nltk_sub) for n in DEFAULT_NS)

    # --- self-BLEU over the hypotheses
    sb, t_self = timed(self_bleu, hyps, DEFAULT_NS)
    _, t_nltk_self = timed(lambda: [nltk_bleu_scores(hyps[:j] + hyps[j + 1:], hyps[j])
                                    for j in range(n_self)])
    t_nltk_self_ex = t_nltk_self * n_hyps / n_self
    # exactness of self_bleu itself (the leave-one-out bookkeeping), on a small set in full
    small = hyps[: cfg.n_check_self]
    fast_small = self_bleu(small, DEFAULT_NS)
    naive = [nltk_bleu_scores(small[:j] + small[j + 1:], s) for j, s in enumerate(small)]
    self_diff = max(abs(fast_small[n] - sum(d[n] for d in naive) / len(naive)) for n in DEFAULT_NS)

    t_fast = t_build + t_score
    t_nltk_ex = t_nltk * n_hyps / len(subset)
    print(f"data: {refs_file.parent}  references: {len(refs)}  hypotheses: {n_hyps}  (whitespace tokens)")
    print()
    print(f"{'BLEU-2..5, all four orders':<44}{'seconds':>10}")
    print(f"{'  fast: reference table build (once)':<44}{t_build:>10.2f}")
    print(f"{f'  fast: score {n_hyps} hyps':<44}{t_score:>10.2f}")
    print(f"{'  fast: total':<44}{t_fast:>10.2f}")
    print(f"{f'  nltk: {len(subset)} hyps, measured':<44}{t_nltk:>10.2f}")
    print(f"{f'  nltk: {n_hyps} hyps, extrapolated':<44}{t_nltk_ex:>10.1f}")
    print(f"{'  speedup (incl. table build)':<44}{t_nltk_ex / t_fast:>9.0f}x")
    print(f"{f'  max |fast - nltk|, {len(subset)} hyps x 4 orders':<44}{diff:>10.1e}")
    print()
    print(f"{f'self-BLEU-2..5, {n_hyps} samples':<44}{'seconds':>10}")
    print(f"{'  fast':<44}{t_self:>10.2f}")
    print(f"{f'  nltk: {n_self} hyps vs {n_hyps - 1} others, measured':<44}{t_nltk_self:>10.2f}")
    print(f"{f'  nltk: {n_hyps} hyps, extrapolated':<44}{t_nltk_self_ex:>10.1f}")
    print(f"{'  speedup':<44}{t_nltk_self_ex / t_self:>9.0f}x")
    print(f"{f'  max |fast - naive nltk|, {len(small)} samples in full':<44}{self_diff:>10.1e}")
    print()
    print(f"{'':<12}" + "".join(f"{f'n={n}':>9}" for n in DEFAULT_NS))
    print(f"{'BLEU':<12}" + "".join(f"{scores[n]:>9.4f}" for n in DEFAULT_NS))
    print(f"{'self-BLEU':<12}" + "".join(f"{sb[n]:>9.4f}" for n in DEFAULT_NS))


if __name__ == "__main__":
    cli.run(main)
