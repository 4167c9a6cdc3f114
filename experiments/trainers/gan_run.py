"""One GAN run's shared state (GANRun): settings, data, the generator, its EMA, the discriminator
and, for VAE pretraining, the posterior encoder; their optimisers; checkpoints and resume; the
evaluations both phases run. The phases that drive it: gan_phases.py; the command: gan.py."""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from baselines.gpt2 import GPT
from datasets import CorpusError, LMData
from datasets.tokenizers import IGNORE_INDEX
from experiments.core import config as cfglib
from experiments.core import runtime
from experiments.core.checkpoint import CheckpointError, check_compatible, load_checkpoint, vocabulary_difference
from experiments.core.session import RunSession
from experiments.generators.generation import gan_texts, lm_checkpoint, load_model
from experiments.scoring.nll import latent_nll, latent_usage, posterior_nll, vae_objective
from experiments.scoring.samples import SampleEvaluator
from experiments.trainers.adversarial_run import AdversarialRun
from gan import Discriminator, Generator, PosteriorEncoder, beta_schedule

if TYPE_CHECKING:
    from experiments.trainers.gan import GANTrainConfig


def pad_to(y, T):
    """Target rows (B, t) -> (B, T), IGNORE_INDEX after the end (the real batch at the fakes' length)."""
    return torch.nn.functional.pad(y, (0, T - y.size(1)), value=IGNORE_INDEX)


def run_dir_of(cfg) -> Path:
    """out_dir/run_name; the default run name is <dataset>-gan."""
    return Path(cfg.out_dir) / (cfg.run_name or f"{Path(cfg.dataset).stem}-gan")


class GANRun(AdversarialRun):
    """The state the phases of one run share: settings, data, the four networks (G, its EMA, D and,
    for VAE pretraining, the encoder E), their optimisers, the run session (lock, guard,
    checkpoints, logger, timing) and where each phase stands."""

    def __init__(self, cfg: GANTrainConfig, gen_cfg, disc_cfg, dist):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        if cfg.batch_size % dist.world:
            raise cfglib.ConfigError(f"batch_size {cfg.batch_size} must be divisible by the world size {dist.world}")
        self.dtype = runtime.resolve_dtype(cfg.dtype, self.device)
        runtime.seed_everything(cfg.seed)  # the same initial weights on every rank
        self.session = RunSession(cfg, run_dir_of(cfg), dist,
                                  advice="Lower the learning rates, set grad_clip, or use another loss")
        self.pre_path = self.session.run_dir / "pretrained.pt"
        self._data(cfg, gen_cfg)
        self._networks(cfg, gen_cfg, disc_cfg)
        # the step budget: pretraining first, the adversarial phase gets what max_steps leaves
        self.pre_total = min(cfg.pretrain_steps, cfg.max_steps) if cfg.max_steps else cfg.pretrain_steps
        self.adv_total = min(cfg.adv_steps, cfg.max_steps - self.pre_total) if cfg.max_steps else cfg.adv_steps
        self.beta_total = cfg.beta_steps or max(self.adv_total, 1)
        self.phase = "pretrain" if self.pre_total > 0 else "adversarial"
        self.pre_step, self.adv_step, self.best_val, self.best_state, self.best_encoder = 0, 0, math.inf, None, None
        self.adv_start_nll = None  # val NLL of the generator the adversarial phase starts from
        if self.session.ckpt:
            self.restore(self.session.ckpt)
        elif cfg.init_from:  # another run's pretrained generator stands in for phase 1
            init = load_checkpoint(cfg.init_from)
            check_compatible(init, "gan", asdict(self.gen_cfg), self.tokenizer.itos, data=cfg.data_settings())
            self.G.load_state_dict(init["model"])
            load_encoder(self.E, init, cfg.init_from)
            self.best_state, self.best_val = copy.deepcopy(self.G.state_dict()), init["best_val"]
            self.phase = "pretrain"
        elif cfg.init_lm:  # the LM stands in for phase 1 (the generator is it, from_lm in _networks)
            self.best_state = copy.deepcopy(self.G.state_dict())
            self.phase = "pretrain"

    def _data(self, cfg, gen_cfg) -> None:
        """Vocabulary from the training split (on resume it must equal the checkpoint's); every
        sentence, real or fake, is read at T tokens (<eos> included)."""
        self.corpus = cfg.load()
        if self.corpus.mode != "sequence":
            raise CorpusError(f"{self.corpus.name} is read as one stream; the GAN needs one sentence per example: "
                              "give --mode sequence (one example per line)")
        self.tokenizer = self.session.tokenizer(self.corpus)
        self.data = LMData(self.corpus, self.tokenizer, block_size=gen_cfg.block_size, batching=cfg.batching)
        if cfg.pretrain_latent == "posterior" and cfg.free_bits > 0:
            # free bits are granted on the batch-mean KL per dimension (gan.losses.free_bits_kl), a batch
            # statistic: over lines of one length it let the posterior collapse (numbers_vae: latent use
            # 0.0000 against 0.10 with random batches, 1,000 pretraining steps)
            self.data.whole_batches("VAE pretraining's free bits are granted on the batch-mean KL")
        self.T = self.data.block_size
        # reference tables built once: the curves are scored against val, the final scoring against test
        self.evaluator = SampleEvaluator(self.corpus, self.tokenizer)
        # the yardstick of the collapse warnings: as many real training sentences, scored alike
        real = random.Random(cfg.seed).sample(self.corpus.train, min(cfg.eval_samples, len(self.corpus.train)))
        self.real_val = self.evaluator.score(real)
        self.usage_batch = next(iter(self.data.eval_batches("val", 64)))  # fixed real prefixes for eval/latent_mi

    def _networks(self, cfg, gen_cfg, disc_cfg) -> None:
        """G, EMA, D, E and the optimisers; sizes the data decides are filled in here, once."""
        V, T = self.tokenizer.vocab_size, self.T
        if cfg.init_lm:
            self.G = Generator.from_lm(start_lm(cfg.init_lm, self.tokenizer.itos), gen_cfg, block_size=T).to(self.device)
            self.gen_cfg = self.G.config
            c = self.gen_cfg
            self.session.say(f"the generator starts as the GPT-2 of {cfg.init_lm} ({c.n_layer} layers x {c.n_embd}, "
                             f"{c.n_head} heads; its sizes replace --generator.n_layer, n_head, n_embd)")
        else:
            self.gen_cfg = dataclasses.replace(gen_cfg, vocab_size=V, block_size=T)
            self.G = Generator(self.gen_cfg).to(self.device)
        self.z_dim = self.gen_cfg.mapping.z_dim
        self.disc_cfg = dataclasses.replace(disc_cfg, vocab_size=V, block_size=T)
        # with the InfoGAN term, D's latent head Q reads back a z of the mapping's size
        self.D = Discriminator(self.disc_cfg, latent_dim=self.z_dim if cfg.info_weight > 0 else 0).to(self.device)
        # VAE pretraining: q(z | x) with the discriminator's sizes; trained with G, then kept as the
        # proposal of the NLL estimate (nll)
        self.E = (PosteriorEncoder(self.disc_cfg, self.z_dim).to(self.device)
                  if cfg.pretrain_latent == "posterior" else None)
        self.mle_model = self.G if self.E is None else torch.nn.ModuleList([self.G, self.E])  # what pretraining fits
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_mle = runtime.make_optimizer(self.mle_model, cfg.pretrain_lr, cfg.weight_decay, betas, self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=betas)
        if self.dist.rank:  # from here on each rank draws its own z, noise and Gumbel noise
            torch.manual_seed(cfg.seed + 7919 * self.dist.rank)

    def restore(self, ckpt: dict) -> None:
        check_compatible(ckpt, "gan", asdict(self.gen_cfg), self.tokenizer.itos, data=self.cfg.data_settings())
        if ckpt["discriminator_config"] != asdict(self.disc_cfg):
            raise CheckpointError(f"checkpoint discriminator config {ckpt['discriminator_config']} differs from "
                                  f"this run's {asdict(self.disc_cfg)}")
        self.G.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.D.load_state_dict(ckpt["discriminator"])
        load_encoder(self.E, ckpt, self.session.last_path)
        for opt, key in ((self.opt_mle, "optimizer_mle"), (self.opt_g, "optimizer_g"), (self.opt_d, "optimizer_d")):
            if ckpt[key]:
                opt.load_state_dict(ckpt[key])
        self.phase, self.pre_step, self.adv_step = ckpt["phase"], ckpt["pretrain_step"], ckpt["adv_step"]
        self.best_val, self.adv_start_nll = ckpt["best_val"], ckpt.get("adv_start_nll")
        runtime.set_rng_state(ckpt["rng"])
        if self.dist.rank:  # the checkpoint holds rank 0's stream; keep the others apart
            torch.manual_seed(self.cfg.seed + 7919 * self.dist.rank + 104729 * self.step)
        self.session.resumed(f"in the {self.phase} phase at step {self.step}")

    @property
    def step(self) -> int:
        """Steps of both phases: the x axis of every curve."""
        return self.pre_step + self.adv_step

    def amp(self):
        return runtime.autocast(self.device, self.dtype)

    def beta_at(self, s: int) -> float:
        return beta_schedule(s, self.beta_total, self.cfg.beta_max, self.cfg.beta_schedule)

    def checkpoint(self, path: Path) -> None:
        self.session.save(path, {
            "model_name": "gan", "model_config": asdict(self.gen_cfg), "model": self.G.state_dict(),
            "ema": self.ema.state_dict(),
            "discriminator_config": asdict(self.disc_cfg), "discriminator": self.D.state_dict(),
            "encoder": self.E.state_dict() if self.E is not None else None,
            "optimizer_mle": self.opt_mle.state_dict(), "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(), "tokenizer": self.tokenizer.state_dict(),
            "fixed_length": self.data.fixed_length,  # how samplers must draw (exactly n tokens, or up to <eos>)
            "phase": self.phase, "pretrain_step": self.pre_step, "adv_step": self.adv_step,
            "best_val": self.best_val, "adv_start_nll": self.adv_start_nll,
        }, {"generator": self.G, "EMA generator": self.ema, "discriminator": self.D}, self.step)

    def draw(self, gen, n: int, seed: int, psi: float | None = None, temperature: float | None = None) -> list[str]:
        psi = self.cfg.psi if psi is None else psi
        if psi != 1.0:  # truncation needs the average style of this generator's mapping
            gen.mapping.estimate_w_avg(self.cfg.w_avg_samples,
                                       generator=torch.Generator(device=self.device).manual_seed(seed))
        return gan_texts(gen, self.tokenizer, n, self.T, self.cfg.temperature if temperature is None else temperature,
                         psi, seed, fixed_length=self.data.fixed_length)

    def nll(self, gen, split: str) -> dict:
        """NLL per token on a split, latents from the prior (K = nll_samples): the estimator of
        every GAN run and every point of a psi sweep. With an encoder also the importance-
        sampled bound with q(z | x) as proposal (K = nll_samples): another upper bound, which
        with the free bits' KL may be the looser of the two (research/gan)."""
        cfg = self.cfg
        out = latent_nll(gen, self.data.eval_batches(split, cfg.eval_batch_size), cfg.nll_samples, self.device,
                         seed=cfg.seed)
        if self.E is not None:
            out["nll_posterior"] = posterior_nll(gen, self.E, self.data.eval_batches(split, cfg.eval_batch_size),
                                                 cfg.nll_samples, self.device, seed=cfg.seed)["nll"]
        return out

    def usage(self, gen) -> float:
        """eval/latent_mi on fixed real prefixes: how much the predictions depend on z."""
        return latent_usage(gen, *self.usage_batch, seed=self.cfg.seed)

    def final_extras(self, gen) -> dict:
        return {"latent_mi": self.usage(gen)}

    def evaluate(self, gen, step: int) -> tuple[float, dict]:
        """val/nll, latent use, the periodic sample metrics and the collapse warnings; (val NLL, scores)."""
        cfg, log = self.cfg, self.session.log
        val = self.nll(gen, "val")
        log.scalar("val/nll", val["nll"], step)
        log.scalar("val/bits", val["bits"], step)
        if "nll_posterior" in val:
            log.scalar("val/nll_posterior", val["nll_posterior"], step)
        log.scalar("eval/latent_mi", self.usage(gen), step)
        texts = self.draw(copy.deepcopy(gen) if cfg.psi != 1.0 else gen, cfg.eval_samples, seed=cfg.seed + step)
        scores = self.evaluator(texts, step, log)
        self.warn_collapse(scores, self.real_val, val["nll"], step)
        log.samples("samples", texts[:cfg.num_samples], step)
        log.flush()
        return val["nll"], scores

    def vae_objective(self) -> float:
        """Posterior pretraining's own objective on val, (reconstruction NLL + free-bits KL) per token
        with z ~ q(z | x) from a fixed seed: what best-on-val selects on in that mode. The NLL bound
        (val/nll) charges the KL under the free bits in full, so it would prefer the early generator
        that ignores z, the very thing this mode is for undoing."""
        return vae_objective(self.G, self.E, self.data.eval_batches("val", self.cfg.eval_batch_size),
                             self.cfg.free_bits, self.device, seed=self.cfg.seed)



def start_lm(path: str, vocab: list[str]) -> GPT:
    """The GPT-2 of init_lm (a run folder, a checkpoint or a Hugging Face folder), on the CPU; its
    vocabulary must be this run's, symbol for symbol (the generator's rows are its rows)."""
    model, tokenizer = load_model(lm_checkpoint(path), "cpu")
    if not isinstance(model, GPT):
        raise CheckpointError(f"init_lm {path} holds a {type(model).__name__}; the generator starts from a GPT-2 "
                              "(a run of experiments.train_lm --model gpt2, or a Hugging Face GPT-2 folder)")
    if tokenizer.itos != list(vocab):
        raise CheckpointError(f"init_lm {path}: {vocabulary_difference(tokenizer.itos, vocab)}; train the GAN with "
                              "the LM's data settings (its run's config.json; at bpe level --tokenizer "
                              "<run>/tokenizer.json)")
    return model


def load_encoder(E, ckpt, path):
    """The posterior encoder's weights from a checkpoint, when this run has one."""
    if E is None:
        return
    if ckpt.get("encoder") is None:
        raise CheckpointError(f"{path} has no posterior encoder (it was pretrained with pretrain_latent = 'prior'); "
                              "use the same pretrain_latent as the run that wrote it")
    E.load_state_dict(ckpt["encoder"])


