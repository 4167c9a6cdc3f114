"""The SeqGAN trainer behind `python -m experiments.train_seqgan` (and experiments.compare's
`seqgan` family): Yu et al. 2017, "SeqGAN: Sequence Generative Adversarial Nets with Policy
Gradient", an LSTM generator trained by REINFORCE against a CNN discriminator, the rewards of
unfinished sequences estimated by Monte Carlo rollouts.

The parts: the generator is the LSTM language model of baselines/rnn.py (LSTMConfig, the
[generator] section; SeqGAN's embedding and hidden width 32 are this trainer's defaults), so
it is scored by scoring.nll.lm_nll and rebuilt from its checkpoint like any LM; the
discriminator is gan/cnn_discriminator.py ([discriminator]); sampling, rollouts, rewards and
the policy-gradient loss are gan/seqgan.py.

Three phases, one run directory, as in the released code (sequence_gan.py):
1. MLE pretraining of G: teacher forcing through experiments.core.session.mle_step, Adam at a
   constant pretrain_lr (SeqGAN: 0.01), batch 64, gradient norm clipped at 5. Validation NLL
   every eval_interval steps; the best-on-validation generator (pretrain_select = "val", the
   default) or the last one ("last", SeqGAN's) is kept (pretrained.pt) and is where the next
   phases start.
2. D pretraining: d_pretrain_rounds rounds (SeqGAN: 50), each with fresh negatives (as many as
   the positives) and d_epochs epochs (3) of Adam (1e-4) on cross-entropy + L2.
3. Adversarial rounds (adv_steps; SeqGAN's TOTAL_BATCH): one generator step (a batch sampled
   from G, rewards from n_rollouts = 16 rollouts of the rollout network per prefix and D,
   REINFORCE with Adam at g_lr = 0.01, gradient norm clipped at 5), then the rollout network
   moves towards G (update_rate 0.8), then d_steps = 5 times: fresh negatives and d_epochs = 3
   epochs of D. The generator at the end is what gets scored (SeqGAN selects nothing).

Sequence protocol: the corpus's `fixed_length` (getattr, 0 when absent). 0: sequences end with
<eos> (at most the data's block_size tokens); L > 0 (SeqGAN's oracle, L = 20): exactly L tokens,
no special token ever sampled. Real and generated sequences reach D alike: the tokens, <pad>
after the end.

Deviations from the paper and its code, each a setting unless said otherwise:
- CPU budgets (experiments/configs/seqgan/oracle.toml): far fewer pretraining epochs, D
  pretraining rounds and adversarial rounds than SeqGAN's 120 / 50 / 200, and each D round
  reads d_samples positives drawn afresh from the training split (SeqGAN: all 10,000) with as
  many negatives; the discriminator may be narrower (num_filters) than SeqGAN's 1,720 filters.
- Selection: by default the MLE phase hands its best-on-validation generator on (SeqGAN: the
  last, pretrain_select = "last"; on the oracle, val NLL bottoms out within a few epochs while
  NLL-oracle keeps falling as the model overfits, so the two choices differ there).
- Generator: baselines/rnn.py's LSTM with SeqGAN's initialisation (init_std = 0.1: every
  weight and bias N(0, 0.1), one bias per gate), but a learned start state (SeqGAN: zeros; ours
  starts at zero and may move) and <bos> as the first input (SeqGAN: token 0, an ordinary word
  of the oracle's vocabulary; ours is a separate embedding row of the same role). The init
  matters: with PyTorch's (embedding N(0, 1)) MLE levels off near 9.28 NLL-oracle on
  seqgan_oracle instead of SeqGAN's ~9.04.
- Discriminator: SeqGAN's architecture, loss and initialisation, except the highway layer's
  weights (PyTorch's Linear init; the code leaves them to TensorFlow's default).
- Rollout network: beta <- update_rate * beta + (1 - update_rate) * theta for every parameter
  after each generator step (the formula of SeqGAN's rollout.py, which copies the embedding
  outright instead; the paper's Algorithm 1 copies beta <- theta, update_rate = 0).
- The REINFORCE loss is summed over a sequence's tokens and averaged over the batch (SeqGAN sums
  over the batch too; with Adam that changes the scale the gradient clipping sees).
- D's batches: the round's positives and negatives are shuffled once and read d_epochs times in
  that order, as SeqGAN's loader does, but the last partial batch is kept (SeqGAN drops it).
- Evaluation follows the adversarial round (SeqGAN tests between the G step and the D steps).
- Variable-length corpora (fixed_length 0) are TextDuel's extension: a prefix that already
  holds <eos> is complete, so its reward is D of the whole sequence; tokens after <eos> carry
  no loss.

Reproducibility and resume: pretraining batches are a function of (seed, step); every sample
(negatives, the generator's batch, the rollouts) comes from its own torch.Generator seeded from
(seed, phase, round); D's positives and shuffles likewise; only D's dropout draws from the
global RNG, whose state last.pt holds. last.pt (written after evaluations, at ckpt_interval and
at the end of each phase) holds G, the rollout network, D, the three Adam optimisers, phase and
step counters, best_val, the RNG and the configs, so a resumed run ends bit-identical to the
uninterrupted one (tests/test_seqgan.py). The run session (experiments/core/session.py) gives
the lock, the divergence guard on every optimizer step, atomic checkpoints, config.json,
metrics.json, samples.txt and TensorBoard.

TensorBoard: train/loss, lr, grad_norm (pretraining); gan/d_loss, gan/d_acc (training accuracy,
dropout on), gan/grad_norm_d per D pretraining round and for the last D round of each
adversarial round; gan/g_loss, gan/reward (mean Q over the generated tokens),
gan/d_fake (mean D(Y) of the generator's batch), gan/grad_norm_g per adversarial round; at every
evaluation val/nll, val/bits and the sample metrics of experiments.scoring.samples under eval/
(eval/nll_oracle on the oracle corpora), text samples, collapse warnings; hparams at the end.
The x axis is the step count of all phases (pretraining steps + D rounds + adversarial rounds).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from baselines import MODELS
from baselines.rnn import LSTMConfig
from datasets import CorpusError, DataConfig, LMData, build_tokenizer
from datasets.tokenizers import Tokenizer
from experiments.core import config as cfglib
from experiments.core import runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe, timed
from experiments.core.checkpoint import CheckpointError, check_compatible, load_checkpoint
from experiments.core.session import RunSession, mle_step, optimizer_update
from experiments.scoring.nll import lm_nll
from experiments.scoring.samples import (NLL_RISE_MARGIN, SELF_BLEU_MARGIN, UNIQUE_MARGIN, SampleEvaluator, brief,
                                         collapse_warnings)
from gan import seqgan
from gan.cnn_discriminator import CNNDiscriminator, CNNDiscriminatorConfig, discriminator_loss

GENERATOR = "lstm"  # the baselines.MODELS entry that is SeqGAN's generator; its name travels in every checkpoint


@dataclass
class SeqGANTrainConfig(DataConfig):
    out_dir: str = "runs"          # parent of run directories (git-ignored)
    run_name: str = ""             # default: <dataset>-seqgan
    seed: int = 1337               # init, batch order, every sample and rollout, D's dropout
    device: str = "auto"           # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
    batch_size: int = 64           # sequences per generator step, MLE and policy gradient (SeqGAN: 64)
    max_steps: int = 0             # cap on pretraining steps + D pretraining rounds + adversarial rounds; 0 = their sum
    max_minutes: float = 0.0       # wall-clock budget of the whole run, final scoring included; 0 = none

    # --- phase 1: MLE pretraining of the generator
    pretrain_steps: int = 2000     # teacher-forcing steps (SeqGAN: 120 epochs of its 10,000 sequences)
    pretrain_lr: float = 0.01      # Adam, constant (SeqGAN: 0.01)
    pretrain_select: str = "val"   # the generator the next phases start from: val (best validation NLL at the
                                   # evaluations) | last (the last pretraining step, as SeqGAN)

    # --- phase 2: D pretraining
    d_pretrain_rounds: int = 10    # rounds of fresh negatives + d_epochs epochs of D (SeqGAN: 50)

    # --- phase 3: adversarial training
    adv_steps: int = 50            # adversarial rounds: 1 generator step, then d_steps D rounds (SeqGAN: 200)
    g_lr: float = 0.01             # generator's policy-gradient Adam (SeqGAN: 0.01, its own optimiser)
    n_rollouts: int = 16           # Monte Carlo rollouts per prefix (SeqGAN: 16)
    update_rate: float = 0.8       # rollout network <- update_rate * itself + (1 - update_rate) * G (SeqGAN: 0.8)
    d_steps: int = 5               # D rounds per adversarial round (SeqGAN: 5)
    d_epochs: int = 3              # epochs of D over each round's positives and negatives (SeqGAN: 3)
    d_samples: int = 0             # positives per D round, drawn afresh from train, and as many negatives;
                                   # 0 = the whole training split (SeqGAN: all 10,000)
    d_batch_size: int = 64         # D's batch (SeqGAN: 64)
    d_lr: float = 1e-4             # D's Adam (SeqGAN: 1e-4)
    grad_clip: float = 5.0         # max gradient norm of the generator's updates, MLE and PG (SeqGAN: 5); 0 = off
    d_grad_clip: float = 0.0       # max gradient norm of D's updates; 0 = off (SeqGAN does not clip D)

    # --- evaluation and sampling
    eval_interval: int = 250       # pretraining steps between evaluations and checkpoints
    adv_eval_interval: int = 0     # adversarial (and D pretraining) rounds between evaluations; 0 = eval_interval
    ckpt_interval: int = 0         # steps or rounds between extra last.pt checkpoints; 0 = at evaluations only
    log_interval: int = 10         # pretraining steps between scalars (the rounds log every round)
    eval_batch_size: int = 256     # validation NLL batches
    eval_samples: int = 1000       # samples scored at each evaluation (BLEU, Self-BLEU, NLL-oracle, ...)
    final_samples: int = 1000      # samples scored at the end, of the final and the pretrained generator
    num_samples: int = 20          # samples printed and logged as text
    temperature: float = 1.0       # sampling temperature of the evaluations (training samples at 1)
    collapse_self_bleu: float = SELF_BLEU_MARGIN  # warn when Self-BLEU-5 exceeds real data's by more than this
    collapse_unique: float = UNIQUE_MARGIN        # warn when the distinct share falls short of real data's by more
    collapse_nll: float = NLL_RISE_MARGIN         # warn when val NLL rises by more than this share while adversarial
    resume: bool = False           # continue from run_dir/last.pt
    progress: bool = True          # tqdm progress bar

    def __post_init__(self):
        super().__post_init__()
        for name in ("batch_size", "n_rollouts", "d_steps", "d_epochs", "d_batch_size", "eval_interval",
                     "log_interval", "eval_batch_size", "final_samples", "num_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SeqGANTrainConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_steps", "max_minutes", "pretrain_steps", "d_pretrain_rounds", "adv_steps", "d_samples",
                     "grad_clip", "d_grad_clip", "adv_eval_interval", "ckpt_interval", "collapse_self_bleu",
                     "collapse_unique", "collapse_nll"):
            if getattr(self, name) < 0:
                raise ValueError(f"SeqGANTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.pretrain_steps == self.d_pretrain_rounds == self.adv_steps == 0:
            raise ValueError("nothing to train: pretrain_steps, d_pretrain_rounds and adv_steps are all 0")
        for name in ("pretrain_lr", "g_lr", "d_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SeqGANTrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.update_rate <= 1.0:
            raise ValueError(f"update_rate must be in [0, 1], got {self.update_rate}")
        if self.eval_samples < 2:
            raise ValueError(f"eval_samples must be >= 2 (Self-BLEU compares samples), got {self.eval_samples}")
        if self.final_samples < 2:
            raise ValueError(f"final_samples must be >= 2, got {self.final_samples}")
        if self.mode not in ("", "sequence"):
            raise ValueError("SeqGAN generates whole sequences: mode must be 'sequence'")
        if self.pretrain_select not in ("val", "last"):
            raise ValueError(f"pretrain_select must be 'val' or 'last', got {self.pretrain_select!r}")


def parse_args(argv):
    """defaults <- config file <- command line, for the three sections. The generator's section
    starts from SeqGAN's sizes (embedding and hidden width 32) and init (N(0, 0.1)), not LSTMConfig's own defaults."""
    sections = cfglib.parse({"train": SeqGANTrainConfig(), "generator": LSTMConfig(n_embd=32, n_embd2=32, init_std=0.1),
                             "discriminator": CNNDiscriminatorConfig()}, argv)
    cfglib.refuse_data_derived(sections)
    if sections["generator"].block_size:
        raise cfglib.ConfigError("generator.block_size comes from the data (the longest sequence); remove it")
    return sections["train"], sections["generator"], sections["discriminator"]


def run_dir_of(cfg) -> Path:
    """out_dir/run_name; the default run name is <dataset>-seqgan."""
    return Path(cfg.out_dir) / (cfg.run_name or f"{Path(cfg.dataset).stem}-seqgan")


def stream(device, *keys) -> torch.Generator:
    """A torch.Generator seeded from keys (the run's seed, a phase, a round ...): every sample of a
    run has its own reproducible stream, independent of the global RNG and of evaluations."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@torch.no_grad()
def generate(model, n: int, T: int, fixed_length: int, generator, temperature: float = 1.0, batch_size: int = 1024):
    """n generated sequences as targets (n, T) (IGNORE_INDEX after the end), in batches."""
    return torch.cat([seqgan.sample(model, min(batch_size, n - i), T, fixed_length, generator, temperature)
                      for i in range(0, n, batch_size)])


def generator_texts(model, tokenizer, n: int, T: int, fixed_length: int, temperature: float = 1.0, seed: int = 0,
                    batch_size: int = 500) -> list[str]:
    """n decoded samples of a SeqGAN generator, reproducible from seed."""
    device = next(model.parameters()).device
    out = generate(model, n, T, fixed_length, torch.Generator(device=device).manual_seed(seed), temperature,
                   batch_size)
    return [tokenizer.decode(row[row >= 0].tolist()) for row in out]


def load_generator(path, device):
    """(generator, tokenizer, checkpoint) rebuilt from a SeqGAN checkpoint alone: the generator is the
    baselines.MODELS entry the checkpoint names, with its config."""
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != "seqgan":
        raise CheckpointError(f"{path} holds a {ckpt['model_name']!r} model, not a SeqGAN run's")
    model_cls, config_cls = MODELS[ckpt["generator"]]
    model = model_cls(config_cls(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), Tokenizer.from_state(ckpt["tokenizer"]), ckpt


class SeqGANRun:
    """The state the phases of one run share: settings, data, G, its rollout copy, D, the three
    optimisers, the run session (lock, guard, checkpoints, logger, timing) and where each phase stands."""

    def __init__(self, cfg: SeqGANTrainConfig, gen_cfg, disc_cfg, dist):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        if dist.enabled:
            raise cfglib.ConfigError("the SeqGAN trainer runs in one process; launch it without torchrun")
        runtime.seed_everything(cfg.seed)
        self.session = RunSession(cfg, run_dir_of(cfg), dist,
                                  advice="Lower the learning rates (pretrain_lr, g_lr, d_lr) or keep grad_clip > 0")
        self.pre_path = self.session.run_dir / "pretrained.pt"
        self._data(cfg, gen_cfg)
        self._networks(cfg, gen_cfg, disc_cfg)
        budget = cfg.max_steps or math.inf  # shared by the phases, in order
        self.pre_total = int(min(cfg.pretrain_steps, budget))
        self.d_total = int(min(cfg.d_pretrain_rounds, budget - self.pre_total))
        self.adv_total = int(min(cfg.adv_steps, budget - self.pre_total - self.d_total))
        self.phase = "pretrain" if self.pre_total else "d_pretrain"
        self.pre_step = self.d_step = self.adv_step = 0
        self.best_val, self.best_state, self.adv_start_nll = math.inf, None, None
        if self.session.ckpt:
            self.restore(self.session.ckpt)

    def _data(self, cfg, gen_cfg) -> None:
        """Vocabulary from the training split; sequences of T tokens (fixed_length, or <eos> within block_size)."""
        self.corpus = cfg.load()
        if self.corpus.mode != "sequence":
            raise CorpusError(f"{self.corpus.name} is read as one stream; SeqGAN needs one sequence per example: "
                              "give --mode sequence (one example per line)")
        self.tokenizer = build_tokenizer(self.corpus)
        self.data = LMData(self.corpus, self.tokenizer, block_size=gen_cfg.block_size)
        self.fixed_length = getattr(self.corpus, "fixed_length", 0)
        self.T = self.fixed_length or self.data.block_size  # tokens of every generated sequence, at most
        self.evaluator = SampleEvaluator(self.corpus, self.tokenizer)  # val references; test only at the end
        # the yardstick of the collapse warnings: as many real training sequences, scored alike
        real = random.Random(cfg.seed).sample(self.corpus.train, min(cfg.eval_samples, len(self.corpus.train)))
        self.real_val = self.evaluator.score(real)

    def _networks(self, cfg, gen_cfg, disc_cfg) -> None:
        """G, its rollout copy, D and the optimisers; sizes the data decides are filled in here, once."""
        V = self.tokenizer.vocab_size
        self.gen_cfg = dataclasses.replace(gen_cfg, vocab_size=V, block_size=self.data.block_size)
        self.disc_cfg = dataclasses.replace(disc_cfg, vocab_size=V)
        self.G = MODELS[GENERATOR][0](self.gen_cfg).to(self.device)
        self.rollout = copy.deepcopy(self.G).requires_grad_(False)  # set from G when the adversarial phase starts
        self.D = CNNDiscriminator(self.disc_cfg).to(self.device)
        # SeqGAN's three Adam optimisers: MLE pretraining, policy gradient, discriminator
        self.opt_mle = torch.optim.Adam(self.G.parameters(), lr=cfg.pretrain_lr)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr)

    def restore(self, ckpt: dict) -> None:
        check_compatible(ckpt, "seqgan", asdict(self.gen_cfg), self.tokenizer.itos, data=self.cfg.data_settings())
        if ckpt["discriminator_config"] != asdict(self.disc_cfg):
            raise CheckpointError(f"checkpoint discriminator config {ckpt['discriminator_config']} differs from "
                                  f"this run's {asdict(self.disc_cfg)}; resume with the checkpoint's settings")
        self.G.load_state_dict(ckpt["model"])
        self.rollout.load_state_dict(ckpt["rollout"])
        self.D.load_state_dict(ckpt["discriminator"])
        for opt, key in ((self.opt_mle, "optimizer_mle"), (self.opt_g, "optimizer_g"), (self.opt_d, "optimizer_d")):
            opt.load_state_dict(ckpt[key])
        self.phase, self.pre_step = ckpt["phase"], ckpt["pretrain_step"]
        self.d_step, self.adv_step = ckpt["d_pretrain_round"], ckpt["adv_step"]
        self.best_val, self.adv_start_nll = ckpt["best_val"], ckpt["adv_start_nll"]
        runtime.set_rng_state(ckpt["rng"])
        self.session.resumed(f"in the {self.phase} phase at step {self.step}")

    @property
    def step(self) -> int:
        """Steps of all phases: the x axis of every curve."""
        return self.pre_step + self.d_step + self.adv_step

    def checkpoint(self, path: Path) -> None:
        self.session.save(path, {
            "model_name": "seqgan", "generator": GENERATOR, "model_config": asdict(self.gen_cfg),
            "model": self.G.state_dict(), "rollout": self.rollout.state_dict(),
            "discriminator_config": asdict(self.disc_cfg), "discriminator": self.D.state_dict(),
            "optimizer_mle": self.opt_mle.state_dict(), "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(), "tokenizer": self.tokenizer.state_dict(),
            "fixed_length": self.fixed_length,  # how samplers must draw (exactly n tokens, or up to <eos>)
            "phase": self.phase, "pretrain_step": self.pre_step, "d_pretrain_round": self.d_step,
            "adv_step": self.adv_step, "best_val": self.best_val, "adv_start_nll": self.adv_start_nll,
        }, {"generator": self.G, "rollout network": self.rollout, "discriminator": self.D}, self.step)

    def draw(self, gen, n: int, seed: int) -> list[str]:
        return generator_texts(gen, self.tokenizer, n, self.T, self.fixed_length, self.cfg.temperature, seed)

    def nll(self, gen, split: str) -> dict:
        """NLL per token (padding excluded) on a split; nll_with_pad is the text-GAN figure."""
        return lm_nll(gen, self.data.eval_batches(split, self.cfg.eval_batch_size), self.device,
                      pad_len=self.data.block_size)

    def warn_collapse(self, scores: dict, real: dict, val_nll: float, step: int) -> list[str]:
        """Collapse warnings against real data (and the val NLL where the adversarial phase started)."""
        cfg = self.cfg
        rise = val_nll / self.adv_start_nll - 1 if self.adv_start_nll else None
        found = collapse_warnings(scores, real, rise, cfg.collapse_self_bleu, cfg.collapse_unique, cfg.collapse_nll)
        for w in found:
            self.session.say(f"warning: step {step}: {w}")
        if found:
            self.session.log.text("warnings", "  \n".join(found), step)
        return found

    def evaluate(self) -> tuple[float, dict]:
        """val/nll of G, the sample metrics (a fixed seed, so the curve follows the model), text samples,
        collapse warnings; (val NLL, scores)."""
        cfg, log, step = self.cfg, self.session.log, self.step
        val = self.nll(self.G, "val")
        log.scalar("val/nll", val["nll"], step)
        log.scalar("val/bits", val["bits"], step)
        texts = self.draw(self.G, cfg.eval_samples, seed=cfg.seed + 1)
        scores = self.evaluator(texts, step, log)
        self.warn_collapse(scores, self.real_val, val["nll"], step)
        log.samples("samples", texts[:cfg.num_samples], step)
        log.flush()
        return val["nll"], scores


# ---------------------------------------------------------------------------------------
# phase 1: MLE pretraining of the generator


def pretrain(run: SeqGANRun, deadline: Deadline, bar) -> None:
    """Teacher forcing through mle_step, Adam at a constant rate; evaluation, best-on-validation and
    last.pt at eval_interval; then the best generator is where the next phases start."""
    cfg, session = run.cfg, run.session
    while run.phase == "pretrain" and run.pre_step < run.pre_total:
        t_step = time.perf_counter()
        x, y = run.data.train_batch(run.pre_step, cfg.batch_size, cfg.seed)
        loss, grad_norm, _ = mle_step(run.G, run.opt_mle, x, y, session.guard, run.step, grad_clip=cfg.grad_clip,
                                      dist=run.dist)
        session.time_step(time.perf_counter() - t_step, "pretrain")
        run.pre_step += 1
        bar.update(1)
        if run.pre_step % cfg.log_interval == 0:
            session.log.scalars({"train/loss": loss, "lr": cfg.pretrain_lr, "grad_norm": grad_norm}, run.step)
            bar.set_postfix(loss=f"{loss:.4f}", best_val=f"{run.best_val:.4f}")
        stop = deadline.expired()
        due = session.due(run.pre_step, run.pre_total, stop)
        if due == "eval":
            (val, scores), seconds = timed(run.evaluate)
            deadline.observe(seconds)
            session.say(f"pretrain step {run.pre_step}: train loss {loss:.4f}, val nll {val:.4f} | {brief(scores)}")
            if val < run.best_val:
                run.best_val = val
                if cfg.pretrain_select == "val":
                    run.best_state = copy.deepcopy(run.G.state_dict())
                    run.checkpoint(run.pre_path)
        if due:
            run.checkpoint(session.last_path)
        if stop:
            session.say(f"wall-clock budget of {cfg.max_minutes} min reached at pretraining step {run.pre_step}")
            break
    if run.phase == "pretrain":
        end_pretraining(run)


def end_pretraining(run: SeqGANRun) -> None:
    """The generator the next phases start from: the best on validation (in memory, or from
    pretrained.pt when this process resumed past the best), or the last one, then written to
    pretrained.pt; D pretraining comes next."""
    if run.cfg.pretrain_select == "last":
        run.checkpoint(run.pre_path)
    elif run.best_state is not None or run.pre_path.exists():
        run.G.load_state_dict(run.best_state if run.best_state is not None else load_checkpoint(run.pre_path)["model"])
    run.phase = "d_pretrain"
    run.checkpoint(run.session.last_path)


# ---------------------------------------------------------------------------------------
# the discriminator's rounds (phase 2, and d_steps per adversarial round)


def d_batches(run: SeqGANRun, key: tuple):
    """One round's data: d_samples positives drawn afresh from train (all of it when 0) and as many
    negatives from G, as D reads them (<pad> after the end) with labels (1 real, 0 generated),
    shuffled once (SeqGAN's loader) -> list of (ids, labels) batches."""
    cfg, split = run.cfg, run.data.splits["train"]
    n = min(cfg.d_samples or len(split), len(split))
    idx = torch.randperm(len(split), generator=stream("cpu", cfg.seed, *key, "positives"))[:n]
    g = stream(run.device, cfg.seed, *key)
    _, y = split.rows(idx)
    real = seqgan.as_ids(seqgan.pad_targets(y, run.T)).to(run.device)
    fake = seqgan.as_ids(generate(run.G, n, run.T, run.fixed_length, g))
    ids = torch.cat([real, fake])
    labels = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)]).to(run.device)
    order = torch.randperm(2 * n, generator=g, device=run.device)
    return list(zip(ids[order].split(cfg.d_batch_size), labels[order].split(cfg.d_batch_size)))


def discriminator_round(run: SeqGANRun, key: tuple) -> dict:
    """Fresh negatives, then d_epochs epochs of D (cross-entropy + L2, Adam) over the round's data,
    every update through optimizer_update; the mean loss and accuracy of the last epoch."""
    cfg, D, guard = run.cfg, run.D, run.session.guard
    batches = d_batches(run, key)
    D.train()
    for _ in range(cfg.d_epochs):
        loss_sum, correct, grad_norm = 0.0, 0, 0.0
        for ids, labels in batches:
            scores = D(ids)  # (B, 2)
            loss = discriminator_loss(D, scores, labels)
            guard.check("discriminator loss", loss.item(), run.step)
            run.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = optimizer_update(D, run.opt_d, cfg.d_grad_clip, guard, run.step)
            loss_sum += loss.item() * len(labels)
            correct += int((scores.argmax(dim=1) == labels).sum())  # training accuracy (dropout on)
    n = sum(len(labels) for _, labels in batches)
    return {"gan/d_loss": loss_sum / n, "gan/d_acc": correct / n, "gan/grad_norm_d": grad_norm}


def d_pretrain(run: SeqGANRun, deadline: Deadline, bar) -> None:
    """d_pretrain_rounds rounds of D on the pretrained generator's negatives; then the adversarial phase."""
    session = run.session
    while run.phase == "d_pretrain" and run.d_step < run.d_total and not deadline.expired():
        t_step = time.perf_counter()
        d = discriminator_round(run, ("d_pretrain", run.d_step))
        session.time_step(time.perf_counter() - t_step, "d_pretrain")
        run.d_step += 1
        bar.update(1)
        session.log.scalars(d, run.step)
        bar.set_postfix(d_loss=f"{d['gan/d_loss']:.3f}", d_acc=f"{d['gan/d_acc']:.3f}")
        stop = deadline.expired()
        due = run.session.due(run.d_step, run.d_total, stop, every=run.cfg.adv_eval_interval)
        if due == "eval":  # nothing of G's to evaluate: D's figures
            session.say(f"D pretraining round {run.d_step}: d_loss {d['gan/d_loss']:.4f}, d_acc {d['gan/d_acc']:.3f}")
        if due:
            run.checkpoint(session.last_path)
        if stop:
            session.say(f"wall-clock budget of {run.cfg.max_minutes} min reached at D pretraining round {run.d_step}")
    if run.phase == "d_pretrain" and run.d_step >= run.d_total:
        start_adversarial_phase(run)


# ---------------------------------------------------------------------------------------
# phase 3: adversarial training


def start_adversarial_phase(run: SeqGANRun) -> None:
    """The rollout network starts as a copy of G; the val NLL here is the collapse warnings' yardstick."""
    run.rollout.load_state_dict(run.G.state_dict())
    run.adv_start_nll = run.nll(run.G, "val")["nll"]
    run.phase = "adversarial"
    run.checkpoint(run.session.last_path)


def generator_step(run: SeqGANRun) -> dict:
    """One policy-gradient step: a batch from G, rewards from the rollout network's completions
    and D, REINFORCE through optimizer_update; then the rollout network moves towards G."""
    cfg, G = run.cfg, run.G
    g = stream(run.device, cfg.seed, "adversarial", run.adv_step)
    targets = seqgan.sample(G, cfg.batch_size, run.T, run.fixed_length, g)
    rewards = seqgan.rollout_rewards(run.rollout, run.D, targets, cfg.n_rollouts, run.fixed_length, g)
    G.train()
    loss = seqgan.policy_gradient_loss(G, targets, rewards, run.fixed_length)
    run.session.guard.check("generator loss", loss.item(), run.step)
    run.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = optimizer_update(G, run.opt_g, cfg.grad_clip, run.session.guard, run.step)
    seqgan.update_rollout(run.rollout, G, cfg.update_rate)
    valid = targets >= 0
    last = valid.sum(dim=1) - 1  # each sequence's last token: its reward is D(Y)
    return {"gan/g_loss": loss.item(), "gan/reward": rewards[valid].mean().item(),
            "gan/d_fake": rewards.gather(1, last[:, None]).mean().item(), "gan/grad_norm_g": grad_norm}


def adversarial(run: SeqGANRun, deadline: Deadline, bar) -> None:
    """Per round: one generator step, then d_steps D rounds on fresh negatives; logged every round."""
    cfg, session = run.cfg, run.session
    while run.phase == "adversarial" and run.adv_step < run.adv_total and not deadline.expired():
        t_step = time.perf_counter()
        g = generator_step(run)
        for k in range(cfg.d_steps):
            d = discriminator_round(run, ("adversarial", run.adv_step, k))
        session.time_step(time.perf_counter() - t_step, "adversarial")
        run.adv_step += 1
        bar.update(1)
        session.log.scalars({**g, **d}, run.step)
        bar.set_postfix(g=f"{g['gan/g_loss']:.3f}", reward=f"{g['gan/reward']:.3f}", d_acc=f"{d['gan/d_acc']:.3f}")
        stop = deadline.expired()
        due = session.due(run.adv_step, run.adv_total, stop, every=cfg.adv_eval_interval)
        if due == "eval":
            (val, scores), seconds = timed(run.evaluate)
            deadline.observe(seconds)
            session.say(f"adversarial round {run.adv_step}: g_loss {g['gan/g_loss']:.4f}, reward "
                        f"{g['gan/reward']:.4f}, d_loss {d['gan/d_loss']:.4f}, d_acc {d['gan/d_acc']:.3f}, "
                        f"val nll {val:.4f} | {brief(scores)}")
        if due:
            run.checkpoint(session.last_path)
        if stop:
            session.say(f"wall-clock budget of {cfg.max_minutes} min reached at adversarial round {run.adv_step}")


# ---------------------------------------------------------------------------------------
# final scoring and the command


def final_scoring(run: SeqGANRun, train_seconds: float) -> tuple[dict, dict]:
    """The final generator and the pretrained one on val and test and in samples, scored against
    test (read here, once); (results, texts by generator)."""
    cfg, session = run.cfg, run.session
    results = {"steps": run.step, "pretrain_steps": run.pre_step, "d_pretrain_rounds": run.d_step,
               "adv_steps": run.adv_step, "train_seconds": train_seconds,
               "ms_per_pretrain_step": session.ms_per_step("pretrain"),
               "ms_per_d_pretrain_round": session.ms_per_step("d_pretrain"),
               "ms_per_adv_step": session.ms_per_step("adversarial"),
               "params": sum(p.numel() for p in run.G.parameters()),
               "discriminator_params": sum(p.numel() for p in run.D.parameters()),
               "fixed_length": run.fixed_length, "temperature": cfg.temperature, "references": "test",
               "data/oov_val": run.data.oov["val"], "data/oov_test": run.data.oov["test"]}
    tester = SampleEvaluator(run.corpus, run.tokenizer, references="test")
    finals = {"final": run.G}
    if run.pre_path.exists():
        pretrained = copy.deepcopy(run.G)
        pretrained.load_state_dict(load_checkpoint(run.pre_path)["model"])
        finals["pretrained"] = pretrained.eval()
    texts = {}
    for name, gen in finals.items():
        for split in ("val", "test"):
            results[f"{name}/{split}_nll"] = run.nll(gen, split)["nll"]
        texts[name] = run.draw(gen, cfg.final_samples, seed=cfg.seed)
        results.update({f"{name}/{k}": v for k, v in tester.score(texts[name]).items()})
    real_test = tester.score(random.Random(cfg.seed).sample(run.corpus.train, min(cfg.final_samples,
                                                                                  len(run.corpus.train))))
    final_scores = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith("final/")}
    results["adv_nll_rise"] = results["final/val_nll"] / run.adv_start_nll - 1 if run.adv_start_nll else None
    results["warnings"] = run.warn_collapse(final_scores, real_test, results["final/val_nll"], run.step)
    return results, texts


def hparams(run: SeqGANRun) -> dict:
    return {**asdict(run.cfg), **{f"generator.{k}": v for k, v in asdict(run.gen_cfg).items()},
            **{f"discriminator.{k}": v for k, v in asdict(run.disc_cfg).items()}}


def describe(run: SeqGANRun) -> str:
    protocol = f"exactly {run.fixed_length} tokens" if run.fixed_length else f"up to {run.T} tokens with <eos>"
    return (f"SeqGAN generator ({GENERATOR}): {sum(p.numel() for p in run.G.parameters()):,} parameters, CNN "
            f"discriminator: {sum(p.numel() for p in run.D.parameters()):,} | {run.corpus.name}: vocab "
            f"{run.tokenizer.vocab_size}, {protocol}, {len(run.data.splits['train']):,} train sequences, "
            f"{run.data.oov_summary()} | device {run.device}")


def reserve_final_scoring(deadline: Deadline, run: SeqGANRun) -> None:
    """Measure what the run does once training stops (the last evaluation, the val NLL where the
    adversarial phase starts, val and test NLL and final_samples samples of two generators, as many
    real sequences scored) and keep that much of max_minutes; sampling is timed on the untrained
    generator, which runs every sample to full length."""
    cfg = run.cfg
    n = min(cfg.eval_samples, cfg.final_samples, PROBE_SAMPLES)
    cost = probe(val=lambda: run.nll(run.G, "val"), samples=lambda: run.evaluator.score(run.draw(run.G, n, seed=0)))
    test_share = run.data.n_tokens("test") / max(run.data.n_tokens("val"), 1)
    per_sample = cost["samples"] / n
    seconds = cost["val"] * (2 + 2 * (1 + test_share)) + per_sample * (cfg.eval_samples + 3 * cfg.final_samples)
    deadline.reserve(seconds, f"the last evaluation and the final scoring (2 generators x {cfg.final_samples} "
                              "samples, NLL on val and test)", evaluation=cost["val"] + per_sample * cfg.eval_samples)


def main(argv=None):
    cfg, gen_cfg, disc_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    run = SeqGANRun(cfg, gen_cfg, disc_cfg, dist)
    session = run.session
    session.say(describe(run))
    session.open_log(run.step, {"train": cfg, "generator": run.gen_cfg, "discriminator": run.disc_cfg})
    if cfg.max_minutes:
        reserve_final_scoring(deadline, run)
    session.start_clock()
    bar = tqdm(total=run.pre_total + run.d_total + run.adv_total, initial=run.step, disable=not cfg.progress,
               dynamic_ncols=True, desc="seqgan")
    pretrain(run, deadline, bar)
    d_pretrain(run, deadline, bar)
    adversarial(run, deadline, bar)
    bar.close()
    results, texts = final_scoring(run, session.train_seconds())
    session.finish(results, texts["final"], hparams(run),
                   {"hparam/test_nll": results["final/test_nll"], "hparam/unique_share": results["final/unique_share"]},
                   run.step, n_show=cfg.num_samples)
    session.say("\n".join(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in results.items()
                          if k != "warnings"))
    session.say("samples:\n" + "\n".join("  " + t for t in texts["final"][:cfg.num_samples]))
    session.say(f"run directory: {session.run_dir}  (tensorboard --logdir {cfg.out_dir}); {deadline.summary()}")
    return results

