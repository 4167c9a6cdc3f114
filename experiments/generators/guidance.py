"""Discriminator guidance for any generator of the comparison: a
discriminator trained post hoc to tell real training text from one generator's samples, and
that generator's sampler guided by it (gan/guided.py's rejection sampling or SIR).

    D, report = train_guide(sampler, corpus.train, GuideConfig(), device)   # report: held-out AUC, calibration
    guided = GuidedSampler(sampler, D, method="sir", strength=1.0, m=8)
    texts = guided.sample(1000, temperature=1.0, seed=0)                    # guided.stats: candidates per sample

The discriminator is gan/discriminator.py's bidirectional transformer scored at a CLS token
(trunk "encoder"), or gan/causal_discriminator.py's GPT-2 trunk scored at <eos> (trunk
"causal"), which can start from the guided LM's own weights (train_guide(init=...), see
lm_discriminator); a GAN's own discriminator can be the start too (gan_discriminator). Each text
is read as its token ids with <eos>, <pad> after, the mask valid up to <eos>; real and generated
texts are encoded alike, so layout cannot give either away.

Training is a step budget, not an epoch cap: binary cross-entropy on balanced batches of real
and generated texts, Adam with a linear learning-rate warm-up, a held-out set of each class
(drawn once, never trained on) measured every eval_interval steps, and early stopping on an
exponentially smoothed held-out loss with `patience` evaluations, so a plateau at chance in the
first few hundred steps does not end it; D is left at its lowest held-out loss. With a
FitCheckpoint the whole state is stored after each pass through the pool, and a fit stopped
midway goes on from there to the discriminator an unstopped one ends at. The training
pool is `samples` texts of each class; with fresh_fakes each pass through it draws new generated
texts (cheap where sampling is), and with fresh_reals new real ones where the corpus can make
them (the oracles: `real_source`; a deviation from training on the fixed training split, so that
D cannot memorise its 10,000 sequences; the test split is never read), and then the held-out
reals are a draw of their own too: a generator that has memorised parts of the training split
makes training-split texts look like its samples, so D would be measured on another
distribution than it learns (on SeqGAN's oracle that pushed the held-out loss above ln 2 while D
trained on fresh draws). Otherwise the real pool is the training split (less the held-out texts)
and the fake pool is as large.

Each evaluation gives the held-out loss, accuracy, expected calibration error (10 equal-width
bins of sigmoid(d)), the Brier score and the AUC (the Mann-Whitney probability that a real text
outscores a generated one, ties counted half) with a percentile bootstrap 95 % interval; the
report carries the whole learning curve. A discriminator whose interval does not lie above 0.5
has no signal (`has_signal`): its guided points say nothing about guidance. The generated texts
are drawn at the temperature (and psi) the guided sampler will use: D models the ratio to that
distribution.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from baselines.gpt2 import GPT
from datasets import oracle as oracle_mod
from datasets.tokenizers import EOS_ID, PAD_ID
from experiments.core.checkpoint import CheckpointError, load_checkpoint, load_checkpoint_under, save_checkpoint
from gan.causal_discriminator import CausalDiscriminator, CausalDiscriminatorConfig
from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.guided import DRS_MAX_COST, GuidedStats, rejection_sample, sir_sample

METHODS = ("drs", "sir")
TRUNKS = ("encoder", "causal")


@dataclass
class GuideConfig:
    trunk: str = "encoder"       # "encoder": gan/discriminator.py (CLS); "causal": gan/causal_discriminator.py
                                 # (<eos>); a given start (a GAN's D, an LM's trunk) decides it instead
    n_layer: int = 2             # the size of a fresh discriminator
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.1
    samples: int = 5000          # training pool: this many generated texts and as many real ones (fewer when the
                                 # training split, less the held-out texts, is smaller: the classes stay balanced)
    val_samples: int = 500       # held out of each class, drawn once: early stopping and every reported figure
    fresh_fakes: bool = True     # new generated texts for every pass through the pool
    fresh_reals: bool = True     # new real texts for every pass where the corpus can make them (the oracles)
    batch_size: int = 64
    lr: float = 3e-4             # Adam, after a linear warm-up
    warmup_steps: int = 200
    steps: int = 20000           # optimizer steps at most; 0: no training (a given discriminator, measured as is)
    eval_interval: int = 250     # steps between held-out evaluations
    patience: int = 8            # evaluations without a lower smoothed held-out loss before stopping
    smoothing: float = 0.6       # the smoothed loss: s = smoothing * s + (1 - smoothing) * loss
    bootstrap: int = 1000        # resamples of the held-out set for the AUC's 95 % interval
    temperature: float = 1.0     # of the generated texts: the distribution D's ratio is to
    psi: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.trunk not in TRUNKS:
            raise ValueError(f"GuideConfig.trunk must be one of {TRUNKS}, got {self.trunk!r}")
        if self.samples < 10 or self.val_samples < 10:
            raise ValueError(f"GuideConfig: samples and val_samples must be >= 10, got {self.samples}, "
                             f"{self.val_samples}")
        if self.steps < 0 or self.warmup_steps < 0:
            raise ValueError(f"GuideConfig.steps and warmup_steps must be >= 0 (steps 0: measure a given D only), "
                             f"got {self.steps}, {self.warmup_steps}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"GuideConfig.smoothing must be in [0, 1), got {self.smoothing}")
        for name in ("batch_size", "patience", "eval_interval", "bootstrap"):
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


@torch.no_grad()
def logits_of(D, ids: torch.Tensor, mask: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    """D's logits (N,) in evaluation mode, in batches, on the CPU."""
    D.eval()
    return torch.cat([D(ids[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(ids), batch_size)])


def auc_pairs(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """(n_real, n_fake): 1 where the real text outscores the generated one, 1/2 at a tie, else 0."""
    r, f = d_real.double()[:, None], d_fake.double()[None, :]
    return (r > f).double() + 0.5 * (r == f).double()


def auc(d_real: torch.Tensor, d_fake: torch.Tensor) -> float:
    """Area under the ROC curve, real texts the positives: the Mann-Whitney U over n_real * n_fake."""
    return float(auc_pairs(d_real, d_fake).mean())


def auc_interval(d_real, d_fake, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC: each class resampled with replacement on its own
    (its size kept), each resample's AUC computed exactly, its counts weighting the pair matrix."""
    M, g = auc_pairs(d_real, d_fake), torch.Generator().manual_seed(seed)

    def counts(n):  # (resamples, n): how often each text is drawn
        idx = torch.randint(n, (resamples, n), generator=g)
        return torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    aucs = ((counts(len(d_real)) @ M) * counts(len(d_fake))).sum(dim=1) / M.numel()
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(aucs, q).tolist()
    return lo, hi


def evaluate(D, ids, mask, labels, device, resamples: int = 1000, seed: int = 0) -> dict:
    """Loss, accuracy (threshold 0), calibration and the AUC with its interval of D on a labelled set."""
    d = logits_of(D, ids, mask, device)
    real, fake = d[labels == 1], d[labels == 0]
    lo, hi = auc_interval(real, fake, resamples, seed)
    return {"loss": F.binary_cross_entropy_with_logits(d, labels.float()).item(),
            "accuracy": float(((d > 0).long() == labels).float().mean()), **calibration(torch.sigmoid(d), labels),
            "auc": auc(real, fake), "auc_lo": lo, "auc_hi": hi}


def has_signal(report: dict) -> bool:
    """Whether D tells real from generated at all: its held-out AUC interval lies above 1/2."""
    return report["val_auc_lo"] > 0.5


FRESH_SEED = 7_000_000  # fresh oracle draws: far from the seeds of the oracle's own splits (datasets/oracle.py)


def real_source(corpus):
    """Where the corpus can make new real texts (an oracle: its own samples), a drawer
    (n, seed) -> texts; else None (the real pool is then the training split)."""
    oracle = corpus.extras.get("oracle")
    if oracle is None:
        return None
    return lambda n, seed: oracle_mod.as_text(oracle.sample(n, seed=FRESH_SEED + seed))


class Pools:
    """The held-out set, drawn once (val_samples real texts, never trained on, and as many
    generated), and the training pool of each pass: `samples` of each class, drawn fresh where
    cfg asks and it can be. The held-out reals are training-split texts held out of the pool, or,
    with fresh reals, a draw of their own from the same source."""

    def __init__(self, sampler, real_texts: list[str], cfg: GuideConfig, T: int, draw_real=None):
        self.sampler, self.cfg, self.T = sampler, cfg, T
        self.fresh_reals = cfg.fresh_reals and draw_real is not None
        self.draw_real = draw_real
        if self.fresh_reals:  # held-out reals from the same source as the training reals: a model that has
            # memorised parts of the training split would otherwise make those look like its own samples
            nv, self.n = cfg.val_samples, cfg.samples
            val_real = draw_real(nv, -1 - cfg.seed)  # a seed no training pass uses (theirs are >= 1)
        else:
            order = random.Random(cfg.seed).sample(range(len(real_texts)), len(real_texts))
            nv = min(cfg.val_samples, len(real_texts) // 5)
            val_real, rest = [real_texts[i] for i in order[:nv]], [real_texts[i] for i in order[nv:]]
            self.n = min(cfg.samples, len(rest))
            self.real = random.Random(cfg.seed + 1).sample(rest, self.n)
        self.val = self.encode(val_real, self.fakes(nv, seed=cfg.seed))
        self.fixed_fake = None

    def fakes(self, n: int, seed: int) -> list[str]:
        return self.sampler.sample(n, temperature=self.cfg.temperature, psi=self.cfg.psi, seed=seed)

    def encode(self, real: list[str], fake: list[str]):
        ids, mask = encode_texts(real + fake, self.sampler.tokenizer, self.T)
        return ids, mask, torch.cat([torch.ones(len(real), dtype=torch.long), torch.zeros(len(fake), dtype=torch.long)])

    def draw(self, round_: int):
        """The training pool of pass `round_` -> (ids, mask, labels)."""
        seed = self.cfg.seed + 1 + round_  # never the held-out fakes' seed
        if self.cfg.fresh_fakes or self.fixed_fake is None:  # fixed: pass 0's, also for a fit gone on from later
            self.fixed_fake = self.fakes(self.n, seed if self.cfg.fresh_fakes else self.cfg.seed + 1)
        real = self.draw_real(self.n, seed) if self.fresh_reals else self.real
        return self.encode(real, self.fixed_fake)


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


def lm_discriminator(sampler, cfg: GuideConfig) -> CausalDiscriminator:
    """A causal discriminator whose trunk starts as the guided LM's own GPT-2 (sampler.model)."""
    model = getattr(sampler, "model", None)
    if not isinstance(model, GPT):
        raise ValueError(f"only a GPT-2 lends its trunk to a discriminator; this sampler's model is "
                         f"{type(model).__name__}: use a fresh one (trunk 'causal' or 'encoder')")
    return CausalDiscriminator.from_lm(model, sampler.data.block_size + 1, dropout=cfg.dropout)


def start_discriminator(sampler, cfg: GuideConfig, init=None):
    """What train_guide starts from: a copy of init, else a fresh one of cfg's trunk and size reading
    the longest text and its <eos>."""
    return copy.deepcopy(init) if init is not None else new_discriminator(sampler, cfg, sampler.data.block_size + 1)


def new_discriminator(sampler, cfg: GuideConfig, T: int):
    """A fresh discriminator of cfg's trunk and size, reading T positions."""
    sizes = dict(vocab_size=sampler.tokenizer.vocab_size, block_size=T, n_layer=cfg.n_layer, n_head=cfg.n_head,
                 n_embd=cfg.n_embd, dropout=cfg.dropout)
    if cfg.trunk == "causal":
        return CausalDiscriminator(CausalDiscriminatorConfig(**sizes))
    return Discriminator(DiscriminatorConfig(**sizes))


def measure(D, pools: Pools, cfg: GuideConfig, device, step: int, smoothed: float | None) -> dict:
    """One row of the learning curve: the held-out figures at `step` and the smoothed loss."""
    row = {"step": step, **evaluate(D, *pools.val, device, cfg.bootstrap, cfg.seed)}
    row["smoothed"] = row["loss"] if smoothed is None else cfg.smoothing * smoothed + (1 - cfg.smoothing) * row["loss"]
    return row


class FitCheckpoint:
    """Where fit stores its whole state after each pass through the pool (D, Adam, the warm-up,
    the batch order's and the global RNG's states, the curve so far and the best weights), under
    `key`, atomically: a fit stopped midway and started again with the same key and settings goes on
    from its last pass and ends as an unstopped one (on SeqGAN's oracle one discriminator is 20-75
    CPU minutes). A file under another key is not read."""

    def __init__(self, path, key: dict):
        self.path, self.key = Path(path), json.loads(json.dumps(key))  # stored as it reads back

    def load(self) -> dict | None:
        return load_checkpoint_under(self.path, self.key)

    def save(self, state: dict) -> None:
        save_checkpoint(self.path, {"model_name": "guide-in-training", "key": self.key, **state})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class FitState:
    """Where fit stands: the learning curve so far, its best row and that row's weights, the lowest
    smoothed loss and the evaluations since, the steps and passes done."""
    curve: list
    best: int
    best_model: dict
    lowest: float
    since: int = 0
    step: int = 0
    round: int = 0


def fit(D, pools: Pools, cfg: GuideConfig, device, logger=None, checkpoint: FitCheckpoint | None = None
        ) -> tuple[list[dict], int]:
    """Binary cross-entropy, Adam with a linear warm-up, up to cfg.steps steps over pass after pass
    of pools.draw; measured every eval_interval steps (and at step 0); stops after cfg.patience
    evaluations without a lower smoothed held-out loss and leaves D at its lowest held-out loss
    -> (the learning curve, the index of its best row). Step 0 is a candidate, so training never
    leaves D worse on the held-out set than it started. checkpoint: stored after each pass, and
    gone on from where it holds one under its key (its curve so far logged again)."""
    opt = torch.optim.Adam(D.parameters(), lr=cfg.lr)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))
    g = torch.Generator().manual_seed(cfg.seed)
    st = resumed(checkpoint, D, opt, warm, g) if checkpoint is not None else None
    if st is None:
        row = measure(D, pools, cfg, device, 0, None)
        st = FitState([row], 0, copy.deepcopy(D.state_dict()), row["smoothed"])
    for row in st.curve[1:]:
        log_row(logger, row)
    while st.step < cfg.steps and st.since < cfg.patience:
        whole = one_pass(D, opt, warm, g, pools, cfg, device, st, logger)
        if whole and checkpoint is not None:  # the state to go on from
            checkpoint.save({"model": D.state_dict(), "optimizer": opt.state_dict(), "warmup": warm.state_dict(),
                             "batch_rng": g.get_state(), "rng": torch.get_rng_state(), "cuda_rng":
                             torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None, **asdict(st)})
    D.load_state_dict(st.best_model)
    return st.curve, st.best


def one_pass(D, opt, warm, g, pools: Pools, cfg: GuideConfig, device, st: FitState, logger) -> bool:
    """One pass through pools.draw(st.round), measured every eval_interval steps -> whether it went
    through the whole pool (False: fit is done, at cfg.steps or out of patience)."""
    ids, mask, labels = pools.draw(st.round)
    st.round += 1
    for batch in torch.randperm(len(labels), generator=g).split(cfg.batch_size):
        D.train()
        loss = F.binary_cross_entropy_with_logits(D(ids[batch].to(device), mask[batch].to(device)),
                                                  labels[batch].float().to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        warm.step()
        st.step += 1
        if st.step % cfg.eval_interval and st.step < cfg.steps:
            continue
        st.curve.append(measure(D, pools, cfg, device, st.step, st.curve[-1]["smoothed"]))
        log_row(logger, st.curve[-1])
        if st.curve[-1]["loss"] < st.curve[st.best]["loss"]:
            st.best, st.best_model = len(st.curve) - 1, copy.deepcopy(D.state_dict())
        smoothed = st.curve[-1]["smoothed"]
        st.lowest, st.since = (smoothed, 0) if smoothed < st.lowest else (st.lowest, st.since + 1)
        if st.step >= cfg.steps or st.since >= cfg.patience:
            return False
    return True


def resumed(checkpoint: FitCheckpoint, D, opt, warm, g) -> FitState | None:
    """The state a stopped fit stored under checkpoint's key, put back into D, the optimizer, the
    warm-up and the RNGs; None where it holds none."""
    at = checkpoint.load()
    if at is None:
        return None
    D.load_state_dict(at["model"])
    opt.load_state_dict(at["optimizer"])
    warm.load_state_dict(at["warmup"])
    g.set_state(at["batch_rng"])
    torch.set_rng_state(at["rng"])
    if at["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(at["cuda_rng"])
    st = FitState(**{f: at[f] for f in FitState.__dataclass_fields__})
    print(f"[guide] going on from step {st.step} ({checkpoint.path})")
    return st


def log_row(logger, row: dict) -> None:
    if logger is not None:
        logger.scalars({k: v for k, v in row.items() if k != "step"}, row["step"], prefix="guide/")


def train_guide(sampler, real_texts: list[str], cfg: GuideConfig, device, init=None, draw_real=None,
                logger=None, checkpoint: FitCheckpoint | None = None) -> tuple[object, dict]:
    """A discriminator for `sampler` (the comparison's protocol: sample, tokenizer, data) trained
    against real texts: real_texts (the training split) or, with cfg.fresh_reals, draw_real(n,
    seed) (real_source(corpus)) -> (D at its lowest held-out loss, report). init: start from a copy
    of this discriminator (a GAN's own: gan_discriminator; the guided LM's trunk: lm_discriminator)
    instead of a fresh one of cfg's trunk and size; with cfg.steps = 0 it is only measured.
    logger: the learning curve goes to it as guide/* (experiments/core/logger.py). checkpoint: fit's
    state is stored there after each pass and gone on from when it is there (FitCheckpoint). The global RNG
    (D's init and dropout draw from it) is seeded from cfg.seed and restored after."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return _train_guide(sampler, real_texts, cfg, device, init, draw_real, logger, checkpoint)


def _train_guide(sampler, real_texts, cfg: GuideConfig, device, init, draw_real, logger, checkpoint):
    T = init.block_size if init is not None else sampler.data.block_size + 1  # the longest text and its <eos>
    pools = Pools(sampler, real_texts, cfg, T, draw_real)
    D = start_discriminator(sampler, cfg, init).to(device)
    curve, best = fit(D, pools, cfg, device, logger, checkpoint)
    report = {**{f"val_{k}": v for k, v in curve[best].items() if k not in ("step", "smoothed")},
              "best_step": curve[best]["step"], "steps": curve[-1]["step"], "curve": curve,
              "pool": pools.n, "val_texts": len(pools.val[2]), "fresh_fakes": cfg.fresh_fakes,
              "fresh_reals": pools.fresh_reals, "config": asdict(cfg),
              "discriminator": {"kind": type(D).__name__, **asdict(D.config)},
              "initialised_from": "given" if init is not None else "fresh"}
    report["signal"] = has_signal(report)
    return D.eval(), report


class Proposals:
    """A base sampler whose draws are remembered: sample(n, seed=s, ...) twice gives the first
    call's texts again without sampling. The guided points of one model all start from the same
    seed, so every SIR point draws the same n x m candidates (sir_sample's one call) and each
    DRS point the same burn-in: drawn once, scored by each discriminator and each strength. The
    texts are the ones a fresh draw would give (a seeded draw is deterministic), so the points
    are unchanged; on SeqGAN's oracle this spares three of a GAN's four 80,000-candidate draws."""

    def __init__(self, base):
        self.base, self.memo = base, {}
        self.tokenizer, self.data, self.info = base.tokenizer, base.data, getattr(base, "info", {})

    def sample(self, n: int, **kwargs) -> list[str]:
        key = (n, tuple(sorted(kwargs.items())))
        if key not in self.memo:
            self.memo[key] = self.base.sample(n, **kwargs)
        return list(self.memo[key])


class GuidedSampler:
    """A sampler of the comparison's protocol guided by a discriminator: method "drs" (strength =
    gamma of the acceptance rule) or "sir" (strength = alpha, m candidates per sample). `stats`
    holds the last call's GuidedStats (candidates per sample kept: its cost); DRS gives up with a
    RuntimeError past max_cost candidates per sample (rejection_sample's)."""

    def __init__(self, base, D: Discriminator, method: str, strength: float, m: int = 8, device="cpu",
                 max_cost: float = DRS_MAX_COST):
        if method not in METHODS:
            raise ValueError(f"guided sampling method must be one of {METHODS}, got {method!r}")
        self.base, self.D, self.method, self.strength, self.m, self.device = base, D, method, strength, m, device
        self.max_cost = max_cost  # DRS: candidates per sample before it gives up (a RuntimeError)
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
                                                 batch=max(n // 2, 1), max_cost=self.max_cost)
        else:
            texts, self.stats = sir_sample(propose, self.score, n, self.m, self.strength, g)
        return texts
