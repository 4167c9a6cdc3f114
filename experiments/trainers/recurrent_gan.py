"""What the two LSTM text-GAN trainers share: SeqGAN's (experiments/trainers/seqgan.py) and the
RelGAN-style one (experiments/trainers/relgan.py). Both train baselines/rnn.py's LSTM, first by
MLE and then against a CNN discriminator; they differ only in how the discriminator's signal
reaches the generator (a Monte Carlo policy gradient, a gradient through relaxed samples). So
one copy here serves both:

- RecurrentGANConfig: the settings both read (run, MLE phase, adversarial rates, evaluation);
- RecurrentGANRun: the state both keep and what they do with it alike (data and vocabulary,
  sampling, NLL, evaluation, collapse warnings, the restore of configs and optimisers);
- pretrain / end_pretraining: the MLE phase; final_scoring, reserve_final_scoring and finish:
  what follows training, and the command's last lines;
- stream / generate / generator_texts: seeded sampling, also what experiments.generators.families samples
  the finished generators with (their checkpoints load through experiments.generators.generation.load_model).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from baselines import MODELS
from datasets import CorpusError, DataConfig, LMData
from experiments.core import config as cfglib
from experiments.core import budget, runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe, timed
from experiments.core.checkpoint import CheckpointError, check_compatible, load_checkpoint
from experiments.core.session import RunSession, mle_step
from experiments.scoring.nll import lm_nll
from experiments.scoring.samples import NLL_RISE_MARGIN, SELF_BLEU_MARGIN, UNIQUE_MARGIN, SampleEvaluator, brief
from experiments.trainers.adversarial_run import AdversarialRun
from gan import seqgan

GENERATOR = "lstm"  # the baselines.MODELS entry that is the generator; its name travels in every checkpoint


@dataclass
class RecurrentGANConfig(DataConfig):
    out_dir: str = "runs"          # parent of run directories (git-ignored)
    run_name: str = ""             # default: <dataset>-<trainer> (seqgan, relgan)
    seed: int = 1337               # init, batch order, every sample, D's dropout
    device: str = "auto"           # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
    batch_size: int = 64           # sequences per generator step, MLE and adversarial (SeqGAN, RelGAN: 64)
    max_steps: int = 0             # cap on the steps and rounds of all phases; 0 = their sum
    max_minutes: float = 0.0       # wall-clock budget of the whole run, final scoring included; 0 = none

    # --- phase 1: MLE pretraining of the generator
    pretrain_steps: int = 2000     # teacher-forcing steps (SeqGAN: 120 epochs of its 10,000 sequences)
    pretrain_lr: float = 0.01      # Adam, constant (SeqGAN and RelGAN: 0.01)
    pretrain_select: str = "val"   # the generator the next phases start from: val (best validation NLL at the
                                   # evaluations) | last (the last pretraining step, as SeqGAN and RelGAN)

    # --- the adversarial phase
    adv_steps: int = 50            # adversarial rounds (steps): 1 generator step, then d_steps of D
    g_lr: float = 0.01             # generator's Adam in the adversarial phase
    d_lr: float = 1e-4             # D's Adam (SeqGAN and RelGAN: 1e-4)
    d_steps: int = 5               # D rounds (steps) per adversarial round (SeqGAN and RelGAN: 5)
    grad_clip: float = 5.0         # max gradient norm of the generator's updates, MLE and adversarial (5); 0 = off
    d_grad_clip: float = 0.0       # max gradient norm of D's updates; 0 = off

    # --- evaluation and sampling
    eval_interval: int = 250       # pretraining steps between evaluations and checkpoints
    adv_eval_interval: int = 0     # adversarial (and D pretraining) rounds between evaluations; 0 = eval_interval
    ckpt_interval: int = 0         # steps or rounds between extra last.pt checkpoints; 0 = at evaluations only
    log_interval: int = 10         # steps between scalars
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
        name = type(self).__name__
        self._check(name, lambda v: v > 0, "must be positive", "batch_size", "d_steps", "eval_interval",
                    "log_interval", "eval_batch_size", "num_samples", "pretrain_lr", "g_lr", "d_lr", "temperature")
        self._check(name, lambda v: v >= 0, "must be >= 0", "max_steps", "max_minutes", "pretrain_steps", "adv_steps",
                    "grad_clip", "d_grad_clip", "adv_eval_interval", "ckpt_interval", "collapse_self_bleu",
                    "collapse_unique", "collapse_nll")
        if self.eval_samples < 2 or self.final_samples < 2:
            raise ValueError(f"eval_samples and final_samples must be >= 2 (Self-BLEU compares samples), got "
                             f"{self.eval_samples}, {self.final_samples}")
        if self.mode not in ("", "sequence"):
            raise ValueError(f"{name}: the generator writes whole sequences: mode must be 'sequence'")
        if self.pretrain_select not in ("val", "last"):
            raise ValueError(f"pretrain_select must be 'val' or 'last', got {self.pretrain_select!r}")

    def _check(self, name: str, ok, what: str, *fields: str) -> None:
        for f in fields:
            if not ok(getattr(self, f)):  # `not ok` also refuses NaN
                raise ValueError(f"{name}.{f} {what}, got {getattr(self, f)}")


def parse_sections(train, generator, discriminator, argv):
    """defaults <- config file <- command line, for the three sections, from the trainer's defaults;
    the vocabulary sizes the data decides are refused. generator.block_size (0 = the longest
    training sequence) is the data's block_size, as train_lm's and train_gan's: the way to keep a
    corpus's overlong lines that the data's message names."""
    sections = cfglib.parse({"train": train, "generator": generator, "discriminator": discriminator}, argv)
    cfglib.refuse_data_derived(sections)
    return sections["train"], sections["generator"], sections["discriminator"]


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
    """n decoded samples of the generator, reproducible from seed."""
    device = next(model.parameters()).device
    out = generate(model, n, T, fixed_length, torch.Generator(device=device).manual_seed(seed), temperature,
                   batch_size)
    return [tokenizer.decode(row[row >= 0].tolist()) for row in out]


class RecurrentGANRun(AdversarialRun):
    """The state the phases of one run share: settings, data, G, D, the optimisers, the run
    session (lock, guard, checkpoints, logger, timing) and where each phase stands. A trainer's
    run class sets `name` and `title`, builds its networks (_networks) and its phases' counters,
    and writes (checkpoint) and reads (restore) its own checkpoint."""

    name = ""   # the checkpoint's model_name and the default run name's suffix: seqgan | relgan
    title = ""  # how messages name the trainer: SeqGAN | RelGAN
    phases: tuple[str, ...] = ()  # the phases, in order

    def _start(self, cfg: RecurrentGANConfig, gen_cfg, disc_cfg, dist) -> None:
        """The part of __init__ both trainers share, up to the networks and the optimisers."""
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        if dist.enabled:
            raise cfglib.ConfigError(f"the {self.title} trainer runs in one process; launch it without torchrun")
        runtime.seed_everything(cfg.seed)
        self.session = RunSession(cfg, run_dir_of(cfg, self.name), dist,
                                  advice="Lower the learning rates (pretrain_lr, g_lr, d_lr) or keep grad_clip > 0")
        self.pre_path = self.session.run_dir / "pretrained.pt"
        self._data(cfg, gen_cfg)
        self._networks(cfg, gen_cfg, disc_cfg)
        self.pre_step = self.adv_step = 0
        self.best_val, self.best_state, self.adv_start_nll = math.inf, None, None

    def _data(self, cfg, gen_cfg) -> None:
        """Vocabulary from the training split; sequences of T tokens (fixed_length, or <eos> within block_size)."""
        self.corpus = cfg.load()
        if self.corpus.mode != "sequence":
            raise CorpusError(f"{self.corpus.name} is read as one stream; {self.title} needs one sequence per "
                              "example: give --mode sequence (one example per line)")
        self.tokenizer = self.session.tokenizer(self.corpus)
        self.data = LMData(self.corpus, self.tokenizer, block_size=gen_cfg.block_size, batching=cfg.batching)
        self.fixed_length = getattr(self.corpus, "fixed_length", 0)
        self.T = self.fixed_length or self.data.block_size  # tokens of every generated sequence, at most
        self.evaluator = SampleEvaluator(self.corpus, self.tokenizer)  # val references; test only at the end
        # the yardstick of the collapse warnings: as many real training sequences, scored alike
        real = random.Random(cfg.seed).sample(self.corpus.train, min(cfg.eval_samples, len(self.corpus.train)))
        self.real_val = self.evaluator.score(real)

    def _sized(self, gen_cfg, disc_cfg) -> None:
        """The configs with the sizes the data decides filled in, once; the generator built."""
        V = self.tokenizer.vocab_size
        self.gen_cfg = dataclasses.replace(gen_cfg, vocab_size=V, block_size=self.data.block_size)
        self.disc_cfg = dataclasses.replace(disc_cfg, vocab_size=V)
        self.G = MODELS[GENERATOR][0](self.gen_cfg).to(self.device)

    def restore_common(self, ckpt: dict, rates: dict[str, float], **adam) -> None:
        """Checks the checkpoint against this run's configs, then loads G, D and the optimisers
        (rates: checkpoint key -> the configured rate). Adam's load_state_dict brings the
        checkpoint's rates back; a rate changed since (session.resumed says which) must take
        effect, so the configured rates (and adam's betas, when given) are set again."""
        check_compatible(ckpt, self.name, asdict(self.gen_cfg), self.tokenizer.itos, data=self.cfg.data_settings())
        if ckpt["discriminator_config"] != asdict(self.disc_cfg):
            raise CheckpointError(f"checkpoint discriminator config {ckpt['discriminator_config']} differs from "
                                  f"this run's {asdict(self.disc_cfg)}; resume with the checkpoint's settings")
        if ckpt["phase"] not in self.phases:
            raise CheckpointError(f"checkpoint phase {ckpt['phase']!r} is not one of this {self.title} trainer's "
                                  f"({', '.join(self.phases)}); it was written by another version: start a new run")
        self.G.load_state_dict(ckpt["model"])
        self.D.load_state_dict(ckpt["discriminator"])
        optimizers = {"optimizer_mle": self.opt_mle, "optimizer_g": self.opt_g, "optimizer_d": self.opt_d}
        for key, lr in rates.items():
            opt = optimizers[key]
            opt.load_state_dict(ckpt[key])
            for group in opt.param_groups:
                group.update(lr=lr, **adam)
        self.phase, self.pre_step, self.adv_step = ckpt["phase"], ckpt["pretrain_step"], ckpt["adv_step"]
        self.best_val, self.adv_start_nll = ckpt["best_val"], ckpt["adv_start_nll"]
        runtime.set_rng_state(ckpt["rng"])

    def common_state(self) -> dict:
        """What every checkpoint of both trainers holds (the trainer adds its own)."""
        return {"model_name": self.name, "generator": GENERATOR, "model_config": asdict(self.gen_cfg),
                "model": self.G.state_dict(), "discriminator_config": asdict(self.disc_cfg),
                "discriminator": self.D.state_dict(), "optimizer_mle": self.opt_mle.state_dict(),
                "optimizer_g": self.opt_g.state_dict(), "optimizer_d": self.opt_d.state_dict(),
                "tokenizer": self.tokenizer.state_dict(),
                "fixed_length": self.fixed_length,  # how samplers must draw (exactly n tokens, or up to <eos>)
                "phase": self.phase, "pretrain_step": self.pre_step, "adv_step": self.adv_step,
                "best_val": self.best_val, "adv_start_nll": self.adv_start_nll}

    def after_pretraining(self) -> None:
        """Where the run goes once the MLE phase has handed its generator on (the trainer's)."""
        raise NotImplementedError

    def draw(self, gen, n: int, seed: int) -> list[str]:
        return generator_texts(gen, self.tokenizer, n, self.T, self.fixed_length, self.cfg.temperature, seed)

    def nll(self, gen, split: str) -> dict:
        """NLL per token (padding excluded) on a split; nll_with_pad is the text-GAN figure."""
        return lm_nll(gen, self.data.eval_batches(split, self.cfg.eval_batch_size), self.device,
                      pad_len=self.data.block_size)

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


def protocol(run: RecurrentGANRun) -> str:
    """How the run's sequences are drawn, for its one-line description."""
    return f"exactly {run.fixed_length} tokens" if run.fixed_length else f"up to {run.T} tokens with <eos>"


def run_dir_of(cfg, trainer: str) -> Path:
    """out_dir/run_name; the default run name is <dataset>-<trainer>."""
    return Path(cfg.out_dir) / (cfg.run_name or f"{Path(cfg.dataset).stem}-{trainer}")


# ---------------------------------------------------------------------------------------
# phase 1: MLE pretraining of the generator


def pretrain(run: RecurrentGANRun, deadline: Deadline, bar) -> None:
    """Teacher forcing through mle_step, Adam at a constant rate; evaluation, best-on-validation and
    last.pt at eval_interval; once all pretrain_steps have run, the selected generator is where the
    next phases start (a run stopped earlier by max_steps or max_minutes stays in this phase)."""
    cfg, session = run.cfg, run.session
    while run.phase == "pretrain" and run.pre_step < run.pre_total:
        t_step = time.perf_counter()
        x, y = run.data.train_batch(run.pre_step, cfg.batch_size, cfg.seed)
        loss, grad_norm, _ = mle_step(run.G, run.opt_mle, x, y, session.guard, run.step, grad_clip=cfg.grad_clip,
                                      dist=run.dist, **run.data.step_settings(cfg.batch_size))
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
    if run.phase == "pretrain" and run.pre_step >= cfg.pretrain_steps:  # a budget stop leaves the phase open:
        end_pretraining(run)                                             # a resume without the cap finishes it


def end_pretraining(run: RecurrentGANRun) -> None:
    """The generator the next phases start from: the best on validation (in memory, or from
    pretrained.pt when this process resumed past the best), or the last one, then written to
    pretrained.pt (nothing to select when no MLE step ran); then the trainer's next phase."""
    if run.pre_step:
        if run.cfg.pretrain_select == "last":
            run.checkpoint(run.pre_path)
        elif run.best_state is not None or run.pre_path.exists():
            run.G.load_state_dict(run.best_state if run.best_state is not None
                                  else load_checkpoint(run.pre_path)["model"])
    run.after_pretraining()


def start_adversarial_phase(run: RecurrentGANRun) -> None:
    """The val NLL of the generator the phase starts from is the collapse warnings' yardstick."""
    run.adv_start_nll = run.nll(run.G, "val")["nll"]
    run.phase = "adversarial"
    run.checkpoint(run.session.last_path)


# ---------------------------------------------------------------------------------------
# after training: the final scoring, its time reserve, the command's last lines


def begin(run: RecurrentGANRun, deadline: Deadline, describe: str, total: int):
    """The command's start once the run is built: its description, the log, the final scoring's
    reserve of max_minutes, the clock; -> the progress bar over `total` steps."""
    cfg, session = run.cfg, run.session
    session.say(describe)
    session.say_batches(run.data, cfg.batch_size, cfg.seed)
    session.open_log(run.step, {"train": cfg, "generator": run.gen_cfg, "discriminator": run.disc_cfg})
    if cfg.max_minutes:
        reserve_final_scoring(deadline, run)
    session.start_clock()
    return tqdm(total=total, initial=run.step, disable=not cfg.progress, dynamic_ncols=True, desc=run.name)


def check_budget(run_class, parse_args, argv) -> None:
    """A max_minutes the final scoring alone would eat, refused without training (budget.check_budget)."""
    cfg, gen_cfg, disc_cfg = parse_args(argv)
    budget.check_budget(cfg, lambda c: run_class(c, gen_cfg, disc_cfg, runtime.Distributed(c.device)),
                        reserve_final_scoring)


def reserve_final_scoring(deadline: Deadline, run: RecurrentGANRun) -> None:
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


def final_scoring(run: RecurrentGANRun, train_seconds: float, counts: dict) -> tuple[dict, dict]:
    """The final generator and the pretrained one on val and test and in samples, scored against
    test (read here, once); counts: the trainer's own figures (its phases' steps and timings).
    -> (results, texts by generator)."""
    cfg, session = run.cfg, run.session
    results = {"steps": run.step, "pretrain_steps": run.pre_step, "adv_steps": run.adv_step, **counts,
               "train_seconds": train_seconds, "ms_per_pretrain_step": session.ms_per_step("pretrain"),
               "ms_per_adv_step": session.ms_per_step("adversarial"),
               "params": sum(p.numel() for p in run.G.parameters()),
               "discriminator_params": sum(p.numel() for p in run.D.parameters()),
               "fixed_length": run.fixed_length, "temperature": cfg.temperature, "references": "test",
               "data/oov_val": run.data.oov["val"], "data/oov_test": run.data.oov["test"]}
    texts = run.score_finals(results, "final", run.G)
    return results, texts


def finish(run: RecurrentGANRun, deadline: Deadline, results: dict, texts: dict) -> dict:
    """metrics.json, samples.txt, hparams and the figures printed; -> results."""
    cfg, session = run.cfg, run.session
    hparams = {**asdict(cfg), **{f"generator.{k}": v for k, v in asdict(run.gen_cfg).items()},
               **{f"discriminator.{k}": v for k, v in asdict(run.disc_cfg).items()}}
    session.finish(results, texts["final"], hparams,
                   {"hparam/test_nll": results["final/test_nll"], "hparam/unique_share": results["final/unique_share"]},
                   run.step, n_show=cfg.num_samples)
    session.say("\n".join(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in results.items()
                          if k != "warnings"))
    session.say("samples:\n" + "\n".join("  " + t for t in texts["final"][:cfg.num_samples]))
    session.say(f"run directory: {session.run_dir}  (tensorboard --logdir {cfg.out_dir}); {deadline.summary()}")
    return results
