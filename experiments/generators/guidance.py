"""Discriminator guidance for any generator of the comparison: a
discriminator trained post hoc to tell real training text from one generator's samples, and
that generator's sampler guided by it (gan/guided.py's rejection sampling or SIR).

    D, report = train_guide(sampler, corpus.train, GuideConfig(), device)   # report: val accuracy, calibration
    guided = GuidedSampler(sampler, D, method="sir", strength=1.0, m=8)
    texts = guided.sample(1000, temperature=1.0, seed=0)                    # guided.stats: candidates per sample

The discriminator is gan/discriminator.py's transformer reading hard tokens: each text as its
token ids with <eos>, <pad> after, the mask valid up to <eos>; real and generated texts are
encoded alike, so layout cannot give either away. It trains on `samples` generated texts and as
many real training texts (the training split only: the test split is for scoring), binary
cross-entropy, Adam; a held-out share of both (val_share) stops it (the best epoch by
validation loss is kept, patience epochs without improvement end it) and measures it: accuracy,
expected calibration error (10 equal-width bins of sigmoid(d)) and the Brier score, so a reader
can see whether d is a usable log density ratio (guidance assumes it is). The generated texts
are drawn at the temperature (and psi) the guided sampler will use: D models the ratio to that
distribution.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from datasets.tokenizers import EOS_ID, PAD_ID
from experiments.core.checkpoint import CheckpointError, load_checkpoint
from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.guided import GuidedStats, rejection_sample, sir_sample

METHODS = ("drs", "sir")


@dataclass
class GuideConfig:
    n_layer: int = 2             # the transformer discriminator's blocks (gan/discriminator.py)
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.1
    samples: int = 5000          # generated texts to train on, and as many real training texts (fewer when the
                                 # training split is smaller: the two classes stay balanced)
    val_share: float = 0.1       # held out of both, to stop training and to measure D
    batch_size: int = 64
    lr: float = 3e-4             # Adam
    max_epochs: int = 20         # 0: no training (a given discriminator, measured as is)
    patience: int = 2            # epochs without a lower validation loss before stopping
    temperature: float = 1.0     # of the generated texts: the distribution D's ratio is to
    psi: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.samples < 10 or not 0.0 < self.val_share < 1.0:
            raise ValueError(f"GuideConfig: samples must be >= 10 and val_share in (0, 1), got {self.samples}, "
                             f"{self.val_share}")
        if self.max_epochs < 0:
            raise ValueError(f"GuideConfig.max_epochs must be >= 0 (0: measure a given D only), got {self.max_epochs}")
        for name in ("batch_size", "patience"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GuideConfig.{name} must be positive, got {getattr(self, name)}")


def encode_texts(texts: list[str], tokenizer, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (ids (N, T), mask (N, T)): the tokens and <eos>, <pad> after, mask True up to and
    including <eos>; a text longer than T - 1 tokens is cut to fit (its <eos> kept)."""
    ids = torch.full((len(texts), T), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(texts), T, dtype=torch.bool)
    for i, text in enumerate(texts):
        row = tokenizer.encode(text)[:T - 1] + [EOS_ID]
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = True
    return ids, mask


def calibration(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> dict:
    """Expected calibration error (bins of equal width over [0, 1]: the sum over bins of the bin's
    share times |mean label - mean probability|) and the Brier score (mean squared error)."""
    probs, labels = probs.double(), labels.double()
    which = torch.clamp((probs * bins).long(), max=bins - 1)
    ece = sum((which == b).double().mean() * (labels[which == b].mean() - probs[which == b].mean()).abs()
              for b in range(bins) if (which == b).any())
    return {"ece": float(ece), "brier": float(((probs - labels) ** 2).mean())}


def _split(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, round(n * share))
    return order[k:], order[:k]


@torch.no_grad()
def logits_of(D: Discriminator, ids: torch.Tensor, mask: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    """D's logits (N,) in evaluation mode, in batches, on the CPU."""
    D.eval()
    return torch.cat([D(ids[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(ids), batch_size)])


def evaluate(D, ids, mask, labels, device) -> dict:
    """Loss, accuracy (threshold 0) and calibration of D on a labelled set."""
    d = logits_of(D, ids, mask, device)
    loss = F.binary_cross_entropy_with_logits(d, labels.float()).item()
    return {"loss": loss, "accuracy": float(((d > 0).long() == labels).float().mean()),
            **calibration(torch.sigmoid(d), labels)}


def guide_examples(sampler, real_texts: list[str], cfg: GuideConfig, T: int):
    """cfg.samples generated texts and as many real ones, encoded alike at T positions, labelled
    (1 real, 0 generated) and split -> (ids, mask, labels, train indices, val indices)."""
    n = min(cfg.samples, len(real_texts))  # as many of each: D's prior odds are 1, so its logit is the log ratio
    fake = sampler.sample(n, temperature=cfg.temperature, psi=cfg.psi, seed=cfg.seed)
    real = random.Random(cfg.seed).sample(real_texts, n)
    ids, mask = encode_texts(real + fake, sampler.tokenizer, T)
    labels = torch.cat([torch.ones(len(real), dtype=torch.long), torch.zeros(len(fake), dtype=torch.long)])
    train, val = (torch.tensor(s) for s in _split(len(labels), cfg.val_share, cfg.seed))
    return ids, mask, labels, train, val


def gan_discriminator(path, device) -> Discriminator:
    """The discriminator a GAN run trained (experiments.train_gan's checkpoint), to guide its own
    generator as is or fine-tuned (train_guide(init=...)). Trained against relaxed samples with the
    run's loss, its score is not a calibrated log density ratio: the report measures how far off."""
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != "gan":
        raise CheckpointError(f"{path} holds a {ckpt['model_name']!r} model; only a GAN run has a transformer "
                              "discriminator to guide with (the others get one trained post hoc)")
    state = {k: v for k, v in ckpt["discriminator"].items() if not k.startswith("latent_head.")}  # InfoGAN's Q
    D = Discriminator(DiscriminatorConfig(**ckpt["discriminator_config"]))
    D.load_state_dict(state)
    return D.to(device).eval()


def fit(D, ids, mask, labels, train, val, cfg: GuideConfig, device) -> tuple[list[dict], int]:
    """Binary cross-entropy, Adam, up to cfg.max_epochs epochs over `train`; validation after each
    (and before the first); stops after cfg.patience epochs without a lower validation loss and
    leaves D at its best epoch -> (validation figures per epoch, the best epoch)."""
    opt = torch.optim.Adam(D.parameters(), lr=cfg.lr)
    history, states = [evaluate(D, ids[val], mask[val], labels[val], device)], [copy.deepcopy(D.state_dict())]
    g, best = torch.Generator().manual_seed(cfg.seed), 0
    while len(history) <= cfg.max_epochs and len(history) - 1 - best < cfg.patience:
        D.train()
        for batch in train[torch.randperm(len(train), generator=g)].split(cfg.batch_size):
            loss = F.binary_cross_entropy_with_logits(D(ids[batch].to(device), mask[batch].to(device)),
                                                      labels[batch].float().to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        history.append(evaluate(D, ids[val], mask[val], labels[val], device))
        if history[-1]["loss"] < history[best]["loss"]:
            best = len(history) - 1
        states.append(copy.deepcopy(D.state_dict()) if best == len(history) - 1 else None)
    D.load_state_dict(states[best])
    return history, best


def train_guide(sampler, real_texts: list[str], cfg: GuideConfig, device,
                init: Discriminator | None = None) -> tuple[Discriminator, dict]:
    """A discriminator for `sampler` (the comparison's protocol: sample, tokenizer, data) trained on
    cfg.samples of its texts against as many real texts drawn from real_texts (the training split)
    -> (D at its best validation epoch, report). init: start from a copy of this discriminator
    (a GAN's own) instead of a fresh one of cfg's size; with cfg.max_epochs = 0 it is only measured.
    Epoch 0 (before training) is a candidate too, so training can never make D worse on validation.
    The global RNG (D's init and dropout draw from it) is seeded from cfg.seed and restored after."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return _train_guide(sampler, real_texts, cfg, device, init)


def _train_guide(sampler, real_texts, cfg: GuideConfig, device, init) -> tuple[Discriminator, dict]:
    T = init.block_size if init is not None else sampler.data.block_size + 1  # the longest text and its <eos>
    ids, mask, labels, train, val = guide_examples(sampler, real_texts, cfg, T)
    if init is not None:
        D = copy.deepcopy(init).to(device)
    else:
        D = Discriminator(DiscriminatorConfig(vocab_size=sampler.tokenizer.vocab_size, block_size=T, n_layer=cfg.n_layer,
                                              n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout)).to(device)
    history, best = fit(D, ids, mask, labels, train, val, cfg, device)
    report = {**{f"val_{k}": v for k, v in history[best].items()}, "best_epoch": best, "epochs": len(history) - 1,
              "train_texts": len(train), "val_texts": len(val), "config": asdict(cfg),
              "discriminator": asdict(D.config), "initialised_from": "given" if init is not None else "fresh"}
    return D.eval(), report


class GuidedSampler:
    """A sampler of the comparison's protocol guided by a discriminator: method "drs" (strength =
    gamma of the acceptance rule) or "sir" (strength = alpha, m candidates per sample). `stats`
    holds the last call's GuidedStats (candidates per sample kept: its cost)."""

    def __init__(self, base, D: Discriminator, method: str, strength: float, m: int = 8, device="cpu"):
        if method not in METHODS:
            raise ValueError(f"guided sampling method must be one of {METHODS}, got {method!r}")
        self.base, self.D, self.method, self.strength, self.m, self.device = base, D, method, strength, m, device
        self.tokenizer, self.data = base.tokenizer, base.data
        self.T = D.block_size
        self.info = {**getattr(base, "info", {}), "guidance": f"{method} {strength:g}" + (f", m {m}" if
                                                                                         method == "sir" else "")}
        self.stats = GuidedStats()

    def score(self, texts: list[str]) -> torch.Tensor:
        return logits_of(self.D, *encode_texts(texts, self.tokenizer, self.T), self.device)

    def sample(self, n: int, temperature: float = 1.0, psi: float = 1.0, seed: int = 0) -> list[str]:
        def propose(k, generator):  # each batch of candidates from its own seed of the base sampler
            return self.base.sample(k, temperature=temperature, psi=psi,
                                    seed=int(torch.randint(2**31 - 1, (), generator=generator)))
        g = torch.Generator().manual_seed(seed)
        if self.method == "drs":
            texts, self.stats = rejection_sample(propose, self.score, n, self.strength, g, burn_in=min(1000, n),
                                                 batch=max(n // 2, 1))
        else:
            texts, self.stats = sir_sample(propose, self.score, n, self.m, self.strength, g)
        return texts
