"""The GAN trainer behind `python -m experiments.train_gan` (and experiments.compare): a
style-based transformer generator against a transformer discriminator.

Two phases, one run directory:
1. MLE pretraining (optional, `pretrain_steps > 0`). The generator is a latent-variable
   language model p(x_t | x_<t, z), so it is trained like the LMs of train_lm by teacher
   forcing, with a fresh z and fresh noise for every sentence. AdamW, warmup and cosine
   decay; validation NLL every eval_interval steps; the best-on-validation generator is
   kept (`pretrained.pt`) and is where the adversarial phase starts. `init_from` starts
   instead from another run's pretrained generator, and `init_lm` from a trained GPT-2 (a
   train_lm run or a Hugging Face GPT-2): the generator gets GPT-2 blocks with zero-initialised
   noise and style branches (gan/generator.py, Generator.from_lm), so it starts as exactly that
   LM and the adversarial phase fine-tunes it (ColdGANs' recipe). With `pretrain_latent = "posterior"`
   it is pretrained instead as the decoder of a VAE: z ~ q(z | x) from gan/encoder.py,
   loss (token NLL + KL with `free_bits`) per token, optional `word_dropout` on the
   decoder's inputs, selection on the validation value of that objective; this is what
   makes the generator use z (with random z it learns to ignore it).
2. Adversarial training (RelGAN, Nie et al. 2019, "RelGAN: Relational Generative
   Adversarial Networks for Text Generation", with the generator of gan/generator.py).
   Per generator step, n_critic discriminator steps; separate Adam optimisers and
   learning rates. The discriminator reads real sentences as one-hot rows and fakes as
   relaxed samples (gan/relax.py: Gumbel-softmax with inverse temperature beta annealed
   from 1 to beta_max, plain softmax, or straight-through), so its gradient reaches every
   step of the generator. Losses from gan/losses.py (standard, rsgan, wgan-gp with its
   gradient penalty, hinge), optionally with R1 on the reals. One relaxed sample per
   iteration serves both players: the discriminator's (last) step reads it detached, then
   the generator's step differentiates through it into the updated discriminator. After
   each generator step the mapping network's running w_avg and an EMA copy of the
   generator are updated; the EMA generator is what gets sampled and evaluated (as in
   StyleGAN).

Conventions are train_lm's: settings resolve once (dataclass defaults <- --config TOML
with [train], [generator], [mapping], [discriminator] tables <- --key=value, a key shared
by two sections written as --generator.n_embd); vocabulary and sentence length come from
the data; checkpoints are written atomically and loaded with weights_only=True, and hold
everything a resume needs (G with its running w_avg, D, EMA, all optimisers, phase and
steps (the beta schedule is a function of the step), the RNG, the tokenizer and the
configs), so a resumed run continues
exactly as the uninterrupted one would. The run directory (out_dir/run_name) receives
TensorBoard events, config.json, pretrained.pt, last.pt, samples.txt and metrics.json.

TensorBoard: train/loss, lr, grad_norm during pretraining; gan/d_loss, gan/g_loss,
gan/d_real and gan/d_fake (mean raw scores), gan/grad_norm_d, gan/grad_norm_g, gan/beta
during adversarial training; at every evaluation val/nll (per token, padding excluded, of
the EMA generator: scoring.nll.latent_nll over nll_samples draws of z and noise from a fixed
seed, an upper bound on the latent NLL), and the sample metrics of experiments/scoring/samples.py
under the LMs' tags (eval/bleu*, eval/self_bleu*, eval/nll_oracle, eval/precision, eval/novelty,
eval/unique_share), and eval/latent_mi (scoring.nll.latent_usage: how much the predictions
depend on z, in nats per token; ~0 means the truncation trick can do nothing); text
samples; hparams at the end.

InfoGAN term (info_weight > 0; Chen et al. 2016): MLE pretraining with z independent of
the data leaves a generator that ignores z, and in the adversarial phase the per-step
Gumbel noise already supplies all the randomness it needs, so nothing else makes it
route variation through z. With info_weight, D gets a second head Q that predicts z
from a fake, both players minimise info_weight * gan.losses.info_loss(Q(fake), z), and
the generator learns to write z into its sentences (gan/info_d, gan/info_g).

Divergence guard (experiments/core/session.py, shared with the LM trainer): a non-finite
loss or gradient norm of any of the three optimisers stops the run before the update, and
non-finite weights are never saved; the FloatingPointError names the last good checkpoint,
which is left intact.
Collapse warnings, relative to real data (experiments.scoring.samples.collapse_warnings): at every
evaluation the samples' Self-BLEU-5 and share of distinct samples are compared with those of
as many real training sentences scored alike, and the EMA generator's validation NLL with its
value when the adversarial phase started; a departure beyond collapse_self_bleu,
collapse_unique or collapse_nll is printed, logged as TensorBoard text (`warnings`) and kept
in metrics.json (`warnings`). The in-training sample metrics use the validation split as
references; the test split is read only by the final scoring.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from baselines.gpt2 import GPT
from datasets import CorpusError, DataConfig, LMData
from datasets.tokenizers import IGNORE_INDEX, PAD_ID, UNK_ID
from experiments.core import config as cfglib
from experiments.core import runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe, timed
from experiments.core.checkpoint import CheckpointError, check_compatible, load_checkpoint, vocabulary_difference
from experiments.core.session import RunSession, mle_step, optimizer_update
from experiments.generation import banned_ids, gan_texts, is_hf_folder, lm_checkpoint, load_model
from experiments.scoring.nll import latent_nll, latent_usage, posterior_nll, vae_objective
from experiments.scoring.samples import NLL_RISE_MARGIN, SELF_BLEU_MARGIN, UNIQUE_MARGIN, SampleEvaluator, brief
from experiments.trainers.adversarial_run import AdversarialRun
from gan import (LOSSES, RELAXATIONS, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig,
                 MappingConfig, PosteriorEncoder, beta_schedule, ema_update, free_bits_kl, gaussian_kl,
                 gradient_penalty, info_loss, r1_penalty, real_inputs)
from gan.relax import pad_inputs


@dataclass
class GANTrainConfig(DataConfig):
    out_dir: str = "runs"          # parent of run directories (git-ignored)
    run_name: str = ""             # default: <dataset>-gan
    seed: int = 1337               # init, z, noise, Gumbel noise and batch order
    device: str = "auto"           # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
    dtype: str = "auto"            # auto (bf16 autocast on CUDA, fp32 elsewhere) | float32 | bfloat16
    batch_size: int = 64           # sentences per step, real and fake (global: summed over ranks)
    max_steps: int = 0             # cap on pretraining + adversarial steps (a shared budget); 0 = their sum
    max_minutes: float = 0.0       # wall-clock budget of the whole run (both phases); 0 = none
    # --- phase 1: MLE pretraining of the generator
    pretrain_steps: int = 1000     # teacher-forcing steps; 0 = purely adversarial (or start from init_from, init_lm)
    init_from: str = ""            # a train_gan checkpoint (another run's pretrained.pt) whose generator replaces
                                   # pretraining: the adversarial phase starts from it (needs pretrain_steps = 0)
    init_lm: str = ""              # a GPT-2 the generator starts as: a train_lm run folder (its best.pt), one of its
                                   # checkpoints, or a Hugging Face GPT-2 folder (then level bpe with its tokenizer);
                                   # the generator takes its sizes and weights (generator.gpt2_blocks; the mapping,
                                   # noise and style settings stay this run's) and needs its vocabulary and
                                   # pretrain_steps = 0: the adversarial phase fine-tunes the LM itself
    pretrain_minutes: float = 0.0  # wall-clock budget of pretraining alone; 0 = none
    pretrain_lr: float = 1e-3      # peak learning rate (AdamW, warmup, cosine decay)
    pretrain_min_lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1      # AdamW, 2-D weights only (pretraining)
    pretrain_latent: str = "prior" # where pretraining's z comes from: prior (z ~ N(0, I), independent of the
                                   # sentence: G learns to ignore z) | posterior (z ~ q(z | x) of gan/encoder.py,
                                   # a VAE: G learns to use z, and truncation gets something to truncate)
    free_bits: float = 0.0         # posterior: KL free of cost up to this many nats per sentence (gan.losses.free_bits_kl)
    word_dropout: float = 0.0      # posterior: share of the decoder's input tokens replaced by <unk> (Bowman et al.
                                   # 2016), so that it must read z to reconstruct; <bos> is kept
    # --- phase 2: adversarial training
    adv_steps: int = 2000          # generator steps
    n_critic: int = 1              # discriminator steps per generator step
    g_lr: float = 1e-4             # generator (and mapping) learning rate, Adam
    d_lr: float = 1e-4             # discriminator learning rate, Adam
    adv_width: str = "own"         # own: each real batch is padded to its own longest line and the fakes end where
                                   # their batch's longest ends | block: both at the corpus's longest line
                                   # (block_size), the earlier layout (the same results, more compute)
    beta1: float = 0.9             # Adam betas, both optimisers and pretraining
    beta2: float = 0.999
    loss: str = "rsgan"            # a name in gan.LOSSES: standard | rsgan | wgan-gp | hinge
    gp_weight: float = 10.0        # wgan-gp: gradient penalty weight (ignored by the other losses)
    r1_gamma: float = 0.0          # R1 penalty on the reals (Mescheder et al. 2018); 0 = off
    info_weight: float = 0.0       # InfoGAN latent recovery (gan.losses.info_loss) in both losses, so that G
                                   # uses z and truncation has an effect; 0 = off (D then has no latent head)
    relax: str = "gumbel"          # a name in gan.RELAXATIONS: gumbel | straight_through | softmax
    beta_max: float = 100.0        # inverse temperature at the end of the schedule (RelGAN: 100 to 1000)
    beta_schedule: str = "exp"     # constant | linear | exp (RelGAN's names)
    beta_steps: int = 0            # generator steps to reach beta_max; 0 = adv_steps
    ema_decay: float = 0.995       # EMA of the generator's weights, per generator step
    grad_clip: float = 5.0         # max gradient norm of every update (G, D and pretraining); 0 = off
    # --- evaluation and sampling
    eval_interval: int = 250       # steps (of either phase) between evaluations and checkpoints
    ckpt_interval: int = 0         # steps between extra last.pt checkpoints (preemption insurance); 0 = at evaluations
    log_interval: int = 10         # steps between scalars
    eval_batch_size: int = 256     # validation NLL batches
    nll_samples: int = 1           # K, latents per sentence of the NLL estimate (log-mean-exp; 1 = E_z[-log p(x|z)])
    eval_samples: int = 1000       # samples scored by the periodic evaluator (BLEU, Self-BLEU, ...)
    final_samples: int = 1000      # samples scored at the end, for the EMA and the pretrained generator
    num_samples: int = 20          # samples printed and logged as text
    temperature: float = 1.0       # sampling temperature of the evaluations
    psi: float = 1.0               # truncation psi of the evaluations (1 = none)
    w_avg_samples: int = 4096      # z drawn to estimate w_avg before sampling with psi != 1
    collapse_self_bleu: float = SELF_BLEU_MARGIN  # warn when Self-BLEU-5 exceeds real data's by more than this
    collapse_unique: float = UNIQUE_MARGIN        # warn when the distinct share falls short of real data's by more
    collapse_nll: float = NLL_RISE_MARGIN         # warn when val NLL rises by more than this share during the
                                                  # adversarial phase
    resume: bool = False           # continue from run_dir/last.pt
    progress: bool = True          # tqdm progress bar

    def __post_init__(self):
        if self.init_lm and is_hf_folder(self.init_lm):  # a Hugging Face GPT-2 reads text with its own BPE
            self.read_with_tokenizer_of(self.init_lm, "init_lm")
        super().__post_init__()
        positive = ("batch_size", "n_critic", "eval_interval", "log_interval", "eval_batch_size",
                    "nll_samples", "eval_samples", "final_samples", "num_samples", "w_avg_samples")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"GANTrainConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("pretrain_steps", "adv_steps", "beta_steps", "max_steps", "max_minutes", "pretrain_minutes",
                     "ckpt_interval",
                     "gp_weight", "r1_gamma", "info_weight", "grad_clip", "weight_decay", "warmup_steps",
                     "collapse_self_bleu", "collapse_unique", "collapse_nll"):
            if getattr(self, name) < 0:
                raise ValueError(f"GANTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.pretrain_steps == 0 and self.adv_steps == 0:
            raise ValueError("nothing to train: pretrain_steps and adv_steps are both 0")
        if self.pretrain_lr <= 0 or not 0 <= self.pretrain_min_lr <= self.pretrain_lr:
            raise ValueError(f"need 0 <= pretrain_min_lr <= pretrain_lr and pretrain_lr > 0, "
                             f"got {self.pretrain_lr}, {self.pretrain_min_lr}")
        if self.g_lr <= 0 or self.d_lr <= 0:
            raise ValueError(f"g_lr and d_lr must be > 0, got {self.g_lr}, {self.d_lr}")
        for name, table in (("loss", LOSSES), ("relax", RELAXATIONS)):
            if getattr(self, name) not in table:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {sorted(table)}")
        if self.beta_schedule not in ("constant", "linear", "exp"):
            raise ValueError(f"beta_schedule must be constant, linear or exp, got {self.beta_schedule!r}")
        if self.beta_max < 1.0:
            raise ValueError(f"beta_max must be >= 1, got {self.beta_max}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("init_from", "init_lm"):
            if getattr(self, name) and self.pretrain_steps:
                raise ValueError(f"{name} replaces MLE pretraining: set pretrain_steps = 0")
        if self.init_from and self.init_lm:
            raise ValueError("give init_from (a GAN's pretrained generator) or init_lm (a GPT-2), not both")
        if self.init_lm and self.pretrain_latent != "prior":
            raise ValueError("init_lm starts from an LM, which has no posterior encoder: keep pretrain_latent = 'prior'")
        if self.adv_width not in ("own", "block"):
            raise ValueError(f"adv_width must be own or block, got {self.adv_width!r}")
        if self.mode not in ("", "sequence"):
            raise ValueError("the GAN generates whole sentences: mode must be 'sequence'")
        if self.pretrain_latent not in ("prior", "posterior"):
            raise ValueError(f"pretrain_latent must be 'prior' or 'posterior', got {self.pretrain_latent!r}")
        for name in ("free_bits", "word_dropout"):
            if getattr(self, name) < 0 or (getattr(self, name) and self.pretrain_latent != "posterior"):
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 0 and needs pretrain_latent = 'posterior'")
        if self.word_dropout >= 1:
            raise ValueError(f"word_dropout must be < 1, got {self.word_dropout}")


def parse_args(argv):
    """defaults <- config file <- command line, for the four sections."""
    sections = cfglib.parse({"train": GANTrainConfig(), "generator": GeneratorConfig(), "mapping": MappingConfig(),
                             "discriminator": DiscriminatorConfig()}, argv)
    cfglib.refuse_data_derived(sections)
    gen_cfg = dataclasses.replace(sections["generator"], mapping=sections["mapping"])
    return sections["train"], gen_cfg, sections["discriminator"]


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


# ---------------------------------------------------------------------------------------
# phase 1: MLE pretraining, teacher forcing with z from the prior (or the posterior)


def pretrain_loss(run: GANRun, logged: dict):
    """loss_fn for mle_step: G's own teacher-forcing loss (a fresh z from the prior and fresh noise
    per sentence), or, as a VAE decoder, (token NLL + KL with free bits) per token with z ~ q(z | x);
    its parts go into `logged`."""
    G, E, cfg = run.G, run.E, run.cfg
    if E is None:
        return lambda _, x, y: G(x, y)[1]

    def vae_loss(_, x, y):
        valid = y != IGNORE_INDEX
        mean, logvar = E.posterior(y)
        if cfg.word_dropout > 0:  # the decoder's inputs (not the encoder's) lose tokens to <unk>
            drop = torch.rand(x.shape, device=x.device) < cfg.word_dropout
            drop[:, 0] = False  # <bos>
            x = x.masked_fill(drop & (x != PAD_ID), UNK_ID)
        _, rec = G(x, y, z=E.sample(mean, logvar).to(G.lm_head.weight.dtype))
        kl = gaussian_kl(mean, logvar)  # (B, z_dim)
        logged.update(rec=rec, kl=kl)
        return rec + free_bits_kl(kl, cfg.free_bits) / (valid.sum() / valid.size(0))

    return vae_loss


def pretrain(run: GANRun, deadline: Deadline, bar) -> None:
    cfg, session = run.cfg, run.session
    logged = {}
    loss_fn = pretrain_loss(run, logged)
    t_phase = time.time()
    while run.phase == "pretrain" and run.pre_step < run.pre_total:
        lr = runtime.lr_at(run.pre_step, cfg.pretrain_lr, cfg.pretrain_min_lr, cfg.warmup_steps, run.pre_total)
        for group in run.opt_mle.param_groups:
            group["lr"] = lr
        t_step = time.perf_counter()
        x, y = run.data.train_batch(run.pre_step, cfg.batch_size, cfg.seed)
        loss, grad_norm, _ = mle_step(run.mle_model, run.opt_mle, x, y, session.guard, run.pre_step,
                                      grad_clip=cfg.grad_clip, loss_fn=loss_fn, dist=run.dist, amp=run.amp,
                                      average_grads=True, **run.data.step_settings(cfg.batch_size))
        session.time_step(time.perf_counter() - t_step, "pretrain")
        run.pre_step += 1
        bar.update(1)
        if run.pre_step % cfg.log_interval == 0:
            session.log.scalars({"train/loss": loss, "lr": lr, "grad_norm": grad_norm}, run.pre_step)
            if run.E is not None:  # reconstruction NLL per token, and the KL per sentence without free bits
                session.log.scalars({"train/rec": logged["rec"].item(),
                                     "train/kl": logged["kl"].sum(-1).mean().item()}, run.pre_step)
            bar.set_postfix(loss=f"{loss:.4f}", best_val=f"{run.best_val:.4f}")
        phase_over = cfg.pretrain_minutes > 0 and run.dist.any((time.time() - t_phase) / 60 >= cfg.pretrain_minutes)
        stop = phase_over or deadline.expired()
        due = session.due(run.pre_step, run.pre_total, stop)
        if due == "eval":
            pretrain_evaluation(run, deadline, loss)
        elif due == "save":
            run.checkpoint(session.last_path)
        if stop:
            session.say(f"pretraining stopped by its wall-clock budget at step {run.pre_step}")
            break
    if run.phase == "pretrain":
        start_adversarial_phase(run)


def pretrain_evaluation(run: GANRun, deadline: Deadline, loss: float) -> None:
    """Evaluate G (the EMA is a copy of G while pretraining: no averaging yet), keep the best on
    validation (the VAE objective in posterior mode) in memory and in pretrained.pt, save last.pt."""
    run.ema.load_state_dict(run.G.state_dict())
    (val, scores), seconds = timed(run.evaluate, run.G, run.pre_step)
    deadline.observe(seconds)
    if run.E is not None:  # select on the objective being trained (see vae_objective)
        val = run.vae_objective()
        run.session.log.scalar("val/vae_objective", val, run.pre_step)
    run.session.say(f"pretrain step {run.pre_step}: train loss {loss:.4f}, val {'objective' if run.E else 'nll'} "
                    f"{val:.4f} | {brief(scores)}")
    if val < run.best_val:  # every rank computes the same val (same weights, same z)
        run.best_val, run.best_state = val, copy.deepcopy(run.G.state_dict())
        run.best_encoder = copy.deepcopy(run.E.state_dict()) if run.E is not None else None
        run.checkpoint(run.pre_path)
    run.checkpoint(run.session.last_path)


def start_adversarial_phase(run: GANRun) -> None:
    """Pretraining is done: the adversarial phase starts from the best-on-validation generator (in
    memory on every rank; from pretrained.pt only when this process resumed past the best)."""
    best = ({"model": run.best_state, "encoder": run.best_encoder} if run.best_state is not None
            else load_checkpoint(run.pre_path))
    run.G.load_state_dict(best["model"])
    if run.E is not None and best.get("encoder") is not None:  # the proposal that goes with that generator
        run.E.load_state_dict(best["encoder"])
    run.G.mapping.estimate_w_avg(run.cfg.w_avg_samples,
                                 generator=torch.Generator(device=run.device).manual_seed(run.cfg.seed))
    run.ema.load_state_dict(run.G.state_dict())
    if run.cfg.init_from or run.cfg.init_lm:  # this run's own record of where its adversarial phase started
        run.checkpoint(run.pre_path)
    run.phase = "adversarial"
    run.adv_start_nll = run.nll(run.G, "val")["nll"]  # the collapse warnings' yardstick for the NLL
    run.checkpoint(run.session.last_path)


# ---------------------------------------------------------------------------------------
# phase 2: adversarial training


def new_z(run: GANRun):
    """z for this rank's share of a batch, drawn here so that both players know the fakes' z."""
    return torch.randn(run.cfg.batch_size // run.dist.world, run.z_dim, device=run.device,
                       dtype=run.G.lm_head.weight.dtype)


def real_batch(run: GANRun, k: int):
    """The k-th real batch of the adversarial phase, this rank's rows as D reads them (one-hot, mask).
    Width: the batch's own longest line (adv_width own) or block_size (block)."""
    cfg, dist = run.cfg, run.dist
    _, y = run.data.train_batch(k, cfg.batch_size, cfg.seed + 1)
    y = y[dist.rank::dist.world]
    return real_inputs(pad_to(y, run.T if cfg.adv_width == "block" else y.size(1)).to(run.device),
                       run.tokenizer.vocab_size)


def draw_fakes(run: GANRun, B: int, z, relax) -> dict:
    """B relaxed fakes from z, up to block_size tokens; generation stops once every row has ended,
    and under adv_width own the fakes are that wide (else padded to block_size)."""
    return run.G.sample(B, run.T, z=z, relax=relax, banned=banned_ids(run.data.fixed_length, run.tokenizer.level),
                        trim=run.cfg.adv_width == "own")


def critic_steps(run: GANRun, z_g, fake_g, relax) -> dict:
    """n_critic discriminator steps on fresh real batches and detached fakes; the last step reads
    the generator step's own sample (detached). Returns the last step's figures and its real batch
    (rsgan's generator loss pairs the fakes with it)."""
    cfg, D, G, info = run.cfg, run.D, run.G, run.cfg.info_weight > 0
    d_loss_fn = LOSSES[cfg.loss][0]
    B = cfg.batch_size // run.dist.world
    D.requires_grad_(True)
    for k in range(cfg.n_critic):
        real, real_mask = real_batch(run, run.adv_step * cfg.n_critic + k)
        if k == cfg.n_critic - 1:
            z, fake = z_g, {"soft": fake_g["soft"].detach(), "mask": fake_g["mask"]}
        else:
            z = new_z(run)
            with torch.no_grad(), run.amp():
                fake = draw_fakes(run, B, z, relax)
        with run.amp():
            d_real, d_fake = D(real, real_mask), D(fake["soft"], fake["mask"], return_latent=info)
            out = {}
            if info:  # Q (D's latent head) learns to read z back from the fake
                d_fake, z_pred = d_fake
                out["info_d"] = info_loss(z_pred, z)
            loss_d = d_loss_fn(d_real, d_fake)
            if info:
                loss_d = loss_d + cfg.info_weight * out["info_d"]
            if cfg.loss == "wgan-gp":  # interpolates real and fake: one width for both
                T = max(real.size(1), fake["soft"].size(1))
                (r, r_mask), (f, f_mask) = pad_inputs(real, real_mask, T), pad_inputs(fake["soft"], fake["mask"], T)
                loss_d = loss_d + gradient_penalty(D, r, f, r_mask | f_mask, cfg.gp_weight)
            if cfg.r1_gamma > 0:
                loss_d = loss_d + r1_penalty(D, real, real_mask, cfg.r1_gamma)
        run.session.guard.check("discriminator loss", loss_d.item(), run.step)
        run.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_norm_d = optimizer_update(D, run.opt_d, cfg.grad_clip, run.session.guard, run.step, run.dist,
                                       average_grads=True)
    return {"loss_d": loss_d, "d_real": d_real, "d_fake": d_fake, "grad_norm_d": grad_norm_d,
            "real": real, "real_mask": real_mask, **out}


def generator_step(run: GANRun, z_g, fake_g, real, real_mask) -> dict:
    """One generator step through its relaxed sample into the updated D (frozen), then the mapping's
    running w_avg and the EMA generator."""
    cfg, D, G, info = run.cfg, run.D, run.G, run.cfg.info_weight > 0
    g_loss_fn = LOSSES[cfg.loss][1]
    D.requires_grad_(False)
    out = {}
    with run.amp():
        d_fake_g = D(fake_g["soft"], fake_g["mask"], return_latent=info)
        if info:  # ... and G to write z into the sentence so that Q can
            d_fake_g, z_pred = d_fake_g
            out["info_g"] = info_loss(z_pred, z_g)
        loss_g = g_loss_fn(D(real, real_mask), d_fake_g)
        if info:
            loss_g = loss_g + cfg.info_weight * out["info_g"]
    run.session.guard.check("generator loss", loss_g.item(), run.step)
    run.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    out["grad_norm_g"] = optimizer_update(G, run.opt_g, cfg.grad_clip, run.session.guard, run.step, run.dist,
                                          average_grads=True)
    G.mapping.update_w_avg(fake_g["w"])
    ema_update(run.ema, G, cfg.ema_decay)
    return {"loss_g": loss_g, **out}


def adversarial(run: GANRun, deadline: Deadline, bar) -> None:
    """Per iteration: the generator's relaxed sample, drawn first with its graph (its detached copy
    is also the fake of the last critic step: one sampling pass saved per iteration; sampling, a
    sequential loop over T steps, is most of the cost on a CPU), n_critic D steps, one G step."""
    cfg, session = run.cfg, run.session
    relax_fn = RELAXATIONS[cfg.relax]
    while run.phase == "adversarial" and run.adv_step < run.adv_total and not deadline.expired():
        t_step = time.perf_counter()
        beta = run.beta_at(run.adv_step)
        relax = functools.partial(relax_fn, beta=beta)
        z_g = new_z(run)
        with run.amp():
            fake_g = draw_fakes(run, cfg.batch_size // run.dist.world, z_g, relax)
        d = critic_steps(run, z_g, fake_g, relax)
        g = generator_step(run, z_g, fake_g, d["real"], d["real_mask"])
        session.time_step(time.perf_counter() - t_step, "adversarial")  # n_critic D steps and one G step
        run.adv_step += 1
        bar.update(1)
        if run.adv_step % cfg.log_interval == 0:
            session.log.scalars({"gan/d_loss": d["loss_d"].item(), "gan/g_loss": g["loss_g"].item(),
                                 "gan/d_real": d["d_real"].mean().item(), "gan/d_fake": d["d_fake"].mean().item(),
                                 "gan/grad_norm_d": d["grad_norm_d"], "gan/grad_norm_g": g["grad_norm_g"],
                                 "gan/beta": beta}, run.step)
            if "info_d" in d:  # per-dimension NLL of z under Q, without 0.5 log 2 pi (0.5 = Q knows nothing)
                session.log.scalars({"gan/info_d": d["info_d"].item(), "gan/info_g": g["info_g"].item()}, run.step)
            bar.set_postfix(d=f"{d['loss_d'].item():.3f}", g=f"{g['loss_g'].item():.3f}", beta=f"{beta:.1f}")
        stop = deadline.expired()
        due = session.due(run.adv_step, run.adv_total, stop)
        if due == "eval":
            (val, scores), seconds = timed(run.evaluate, run.ema, run.step)
            deadline.observe(seconds)
            session.say(f"adversarial step {run.adv_step}: d_loss {d['loss_d'].item():.4f}, g_loss "
                        f"{g['loss_g'].item():.4f}, beta {beta:.1f}, EMA val nll {val:.4f} | {brief(scores)}")
        if due:
            run.checkpoint(session.last_path)
        if stop:
            session.say(f"wall-clock budget of {cfg.max_minutes} min reached at adversarial step {run.adv_step}")


# ---------------------------------------------------------------------------------------
# final scoring and the command


def final_scoring(run: GANRun, train_seconds: float) -> tuple[dict, dict]:
    """The EMA generator (and the pretrained one, for reference) on val and test and in samples,
    scored against test (read here, once); (results, texts by generator)."""
    cfg = run.cfg
    results = {"steps": run.step, "pretrain_steps": run.pre_step, "adv_steps": run.adv_step,
               "train_seconds": train_seconds, "ms_per_pretrain_step": run.session.ms_per_step("pretrain"),
               "ms_per_adv_step": run.session.ms_per_step("adversarial"), "temperature": cfg.temperature,
               "psi": cfg.psi,
               "nll_K": cfg.nll_samples, "references": "test", "data/oov_val": run.data.oov["val"],
               "data/oov_test": run.data.oov["test"]}
    texts = run.score_finals(results, "ema", run.ema)
    return results, texts


def hparams(run: GANRun) -> dict:
    return {**asdict(run.cfg), **{f"generator.{k}": v for k, v in asdict(run.gen_cfg).items() if k != "mapping"},
            **{f"mapping.{k}": v for k, v in asdict(run.gen_cfg.mapping).items()},
            **{f"discriminator.{k}": v for k, v in asdict(run.disc_cfg).items()}}


def describe(run: GANRun) -> str:
    return (f"generator: {sum(p.numel() for p in run.G.parameters()):,} parameters, discriminator: "
            f"{sum(p.numel() for p in run.D.parameters()):,} | {run.corpus.name}: vocab {run.tokenizer.vocab_size}, "
            f"{run.T} tokens per sentence, {len(run.data.splits['train'].x):,} train sentences, "
            f"{run.data.oov_summary()} | device {run.device} {str(run.dtype).replace('torch.', '')}")


def main(argv=None):
    cfg, gen_cfg, disc_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)  # single process unless launched by torchrun
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    run = GANRun(cfg, gen_cfg, disc_cfg, dist)
    session = run.session
    session.say(describe(run))
    session.say_batches(run.data, cfg.batch_size, cfg.seed)
    session.open_log(run.step, {"train": cfg, "generator": run.gen_cfg, "discriminator": run.disc_cfg})
    if cfg.max_minutes:
        reserve_final_scoring(deadline, cfg, run.data, run.G, run.pre_total > 0 or run.pre_path.exists(), run.nll,
                              lambda n: run.evaluator.score(run.draw(copy.deepcopy(run.G), n, seed=0)),
                              lambda: run.usage(run.G))
    session.start_clock()
    bar = tqdm(total=run.pre_total + run.adv_total, initial=run.step,
               disable=not (cfg.progress and dist.is_main), dynamic_ncols=True, desc="gan")
    pretrain(run, deadline, bar)
    adversarial(run, deadline, bar)
    bar.close()
    train_seconds = session.train_seconds()  # accumulated across resumes
    dist.close()
    if not dist.is_main:  # the final scoring reads rank 0's files and writes the run's results
        return {}
    results, texts = final_scoring(run, train_seconds)
    session.finish(results, texts["ema"], hparams(run),
                   {"hparam/test_nll": results["ema/test_nll"], "hparam/unique_share": results["ema/unique_share"]},
                   run.step, n_show=cfg.num_samples)
    session.say("\n".join(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in results.items()
                          if k != "warnings"))
    session.say("samples (EMA generator):\n" + "\n".join("  " + t for t in texts["ema"][:cfg.num_samples]))
    session.say(f"run directory: {session.run_dir}  (tensorboard --logdir {cfg.out_dir}); {deadline.summary()}")
    return results


def reserve_final_scoring(deadline, cfg, data, G, two_generators, nll_fn, draw_and_score, usage):
    """Measure what the run does once training stops (the last evaluation, the val NLL where the
    adversarial phase starts, then val and test NLL, latent use and final_samples samples of the
    EMA and the pretrained generator, and as many real sentences scored) and keep that much of
    max_minutes. Sampling is timed on the untrained generator: every sample runs to full length."""
    n = min(cfg.eval_samples, cfg.final_samples, PROBE_SAMPLES)
    cost = probe(val=lambda: nll_fn(G, "val"), samples=lambda: draw_and_score(n), usage=usage)
    test_share = data.n_tokens("test") / max(data.n_tokens("val"), 1)
    gens = 2 if two_generators else 1
    per_sample = cost["samples"] / n
    seconds = (cost["val"] * (2 + gens * (1 + test_share)) + cost["usage"] * (1 + gens)
               + per_sample * (cfg.eval_samples + (gens + 1) * cfg.final_samples))
    deadline.reserve(seconds, f"the last evaluation and the final scoring ({gens} generator{'s' if gens > 1 else ''} x "
                              f"{cfg.final_samples} samples of up to {data.block_size} tokens, NLL on val and test)",
                     evaluation=cost["val"] + cost["usage"] + per_sample * cfg.eval_samples)


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

