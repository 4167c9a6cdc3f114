"""Train the text GAN: a style-based transformer generator against a transformer discriminator.

    python -m experiments.train_gan --config experiments/configs/gan/numbers.toml
    python -m experiments.train_gan --dataset numbers --pretrain_steps 0 --adv_steps 3000
    python -m experiments.train_gan --dataset coco --loss rsgan --beta_max 1000 --generator.n_embd 128
    python -m experiments.train_gan --config experiments/configs/gan/coco.toml --pretrain_steps 0 \
        --init_from runs/gan/coco-gan/pretrained.pt --run_name coco-gan-b   # another adversarial phase

Two phases, one run directory:
1. MLE pretraining (optional, `pretrain_steps > 0`). The generator is a latent-variable
   language model p(x_t | x_<t, z), so it is trained like the LMs of train_lm by teacher
   forcing, with a fresh z and fresh noise for every sentence. AdamW, warmup and cosine
   decay; validation NLL every eval_interval steps; the best-on-validation generator is
   kept (`pretrained.pt`) and is where the adversarial phase starts. `init_from` starts
   instead from another run's pretrained generator. With `pretrain_latent = "posterior"`
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
everything a resume needs (G, D, EMA, w_avg, all optimisers, phase and step, the beta
schedule's position, the RNG, the tokenizer and the configs), so a resumed run continues
exactly as the uninterrupted one would. The run directory (out_dir/run_name) receives
TensorBoard events, config.json, pretrained.pt, last.pt, samples.txt and metrics.json.

TensorBoard: train/loss, lr, grad_norm during pretraining; gan/d_loss, gan/g_loss,
gan/d_real and gan/d_fake (mean raw scores), gan/grad_norm_d, gan/grad_norm_g, gan/beta
during adversarial training; at every evaluation val/nll (per token, padding excluded, of
the EMA generator: evaluate.latent_nll over nll_samples draws of z and noise from a fixed
seed, an upper bound on the latent NLL), and the sample metrics of experiments/scoring/samples.py under the
LMs' tags (eval/bleu*, eval/self_bleu*, eval/nll_oracle, eval/precision, eval/novelty,
eval/unique_share), and eval/latent_mi (evaluate.latent_usage: how much the predictions
depend on z, in nats per token; ~0 means the truncation trick can do nothing); text
samples; hparams at the end.

InfoGAN term (info_weight > 0; Chen et al. 2016): MLE pretraining with z independent of
the data leaves a generator that ignores z, and in the adversarial phase the per-step
Gumbel noise already supplies all the randomness it needs, so nothing else makes it
route variation through z. With info_weight, D gets a second head Q that predicts z
from a fake, both players minimise info_weight * gan.losses.info_loss(Q(fake), z), and
the generator learns to write z into its sentences (gan/info_d, gan/info_g).

Divergence guard: a non-finite loss, or non-finite weights about to be saved, stops the
run with FloatingPointError naming the last good checkpoint, which is left intact.
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
import json
import math
import sys
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from datasets import CorpusError, DataConfig, LMData, build_tokenizer
from datasets.tokenizers import IGNORE_INDEX, PAD_ID, UNK_ID
from experiments.core import cli, config as cfglib
from experiments.core import runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe, timed
from experiments.core.checkpoint import (CheckpointError, check_compatible, load_checkpoint, load_resume_checkpoint,
                                    save_checkpoint, write_text)
from experiments.scoring.nll import latent_nll, latent_usage, posterior_nll
from experiments.core.logger import RunLogger
from experiments.generation import gan_texts
from experiments.scoring.samples import (NLL_RISE_MARGIN, SELF_BLEU_MARGIN, UNIQUE_MARGIN, SampleEvaluator,
                                  collapse_warnings)
from experiments.core.runlock import RunLock
from gan import (LOSSES, RELAXATIONS, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig,
                 MappingConfig, PosteriorEncoder, beta_schedule, free_bits_kl, gaussian_kl, gradient_penalty,
                 ema_update, info_loss, r1_penalty, real_inputs)


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
    pretrain_steps: int = 1000     # teacher-forcing steps; 0 = purely adversarial (or start from init_from)
    init_from: str = ""            # a train_gan checkpoint (another run's pretrained.pt) whose generator replaces
                                   # pretraining: the adversarial phase starts from it (needs pretrain_steps = 0)
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
        super().__post_init__()
        positive = ("batch_size", "n_critic", "eval_interval", "log_interval", "eval_batch_size",
                    "nll_samples", "eval_samples", "final_samples", "num_samples", "w_avg_samples")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"GANTrainConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("pretrain_steps", "adv_steps", "beta_steps", "max_steps", "max_minutes", "pretrain_minutes",
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
        if self.init_from and self.pretrain_steps:
            raise ValueError("init_from replaces MLE pretraining: set pretrain_steps = 0")
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
    config_path, pairs = cfglib.split_cli(argv)
    file_values = cfglib.load_file(config_path) if config_path else {}
    sections = cfglib.resolve({"train": GANTrainConfig(), "generator": GeneratorConfig(), "mapping": MappingConfig(),
                               "discriminator": DiscriminatorConfig()}, file_values, pairs)
    cfglib.refuse_data_derived(sections)
    gen_cfg = dataclasses.replace(sections["generator"], mapping=sections["mapping"])
    return sections["train"], gen_cfg, sections["discriminator"]


def pad_to(y, T):
    """Target rows (B, t) -> (B, T), IGNORE_INDEX after the end (the real batch at the fakes' length)."""
    return torch.nn.functional.pad(y, (0, T - y.size(1)), value=IGNORE_INDEX)


def check_finite(name, value, step, last_path):
    """The divergence guard: stop at once, leaving the last good checkpoint as it is."""
    if not math.isfinite(value):
        saved = (f"The last good checkpoint, {last_path}, is intact" if Path(last_path).is_file()
                 else "No checkpoint had been written yet")
        raise FloatingPointError(f"non-finite {name} ({value}) at step {step}; the run diverged and stops here. "
                                 f"{saved}. Lower the learning rates, set grad_clip, or use another loss")


def run_dir_of(cfg) -> Path:
    """out_dir/run_name; the default run name is <dataset>-gan."""
    return Path(cfg.out_dir) / (cfg.run_name or f"{Path(cfg.dataset).stem}-gan")


def main(argv=None):
    cfg, gen_cfg, disc_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)  # single process unless launched by torchrun
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    device = dist.device
    if cfg.batch_size % dist.world:
        raise cfglib.ConfigError(f"batch_size {cfg.batch_size} must be divisible by the world size {dist.world}")
    dtype = runtime.resolve_dtype(cfg.dtype, device)
    amp = lambda: runtime.autocast(device, dtype)  # noqa: E731
    runtime.seed_everything(cfg.seed)  # the same initial weights on every rank
    run_dir = run_dir_of(cfg)
    last_path, pre_path = run_dir / "last.pt", run_dir / "pretrained.pt"
    lock = RunLock(run_dir, enabled=dist.is_main).acquire()  # one writer per run directory

    # ---- data: vocabulary from the training split (or from the checkpoint we resume)
    corpus = cfg.load()
    if corpus.mode != "sequence":
        raise CorpusError(f"{corpus.name} is read as one stream; the GAN needs one sentence per example: "
                          "give --mode sequence (one example per line)")
    ckpt = load_resume_checkpoint(last_path) if cfg.resume else None
    tokenizer = build_tokenizer(corpus)  # deterministic; on resume it must equal the checkpoint's (checked below)
    data = LMData(corpus, tokenizer, block_size=gen_cfg.block_size)
    T = data.block_size  # every sentence, real or fake, is read at this length (<eos> included)

    # ---- models: sizes the data decides are filled in here, once
    gen_cfg = dataclasses.replace(gen_cfg, vocab_size=tokenizer.vocab_size, block_size=T)
    z_dim = gen_cfg.mapping.z_dim
    if cfg.info_weight > 0 and disc_cfg.latent_dim not in (0, z_dim):
        raise cfglib.ConfigError(f"discriminator.latent_dim ({disc_cfg.latent_dim}) must equal mapping.z_dim ({z_dim}) "
                         "for info_weight > 0; leave it 0 and it is set here")
    if cfg.info_weight == 0 and disc_cfg.latent_dim:
        raise cfglib.ConfigError("discriminator.latent_dim > 0 only serves info_weight > 0; set both or neither")
    disc_cfg = dataclasses.replace(disc_cfg, vocab_size=tokenizer.vocab_size, block_size=T,
                                   latent_dim=z_dim if cfg.info_weight > 0 else 0)
    G = Generator(gen_cfg).to(device)
    D = Discriminator(disc_cfg).to(device)
    # VAE pretraining: q(z | x) with the discriminator's sizes; trained with G, then kept as the
    # proposal of the NLL estimate (nll_fn)
    E = PosteriorEncoder(disc_cfg, z_dim).to(device) if cfg.pretrain_latent == "posterior" else None
    mle_model = G if E is None else torch.nn.ModuleList([G, E])  # what pretraining optimises
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_mle = runtime.make_optimizer(mle_model, cfg.pretrain_lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2))
    if dist.rank:  # from here on each rank draws its own z, noise and Gumbel noise
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    d_loss_fn, g_loss_fn = LOSSES[cfg.loss]
    relax_fn = RELAXATIONS[cfg.relax]
    # the step budget: pretraining first, the adversarial phase gets what max_steps leaves
    pre_total = min(cfg.pretrain_steps, cfg.max_steps) if cfg.max_steps else cfg.pretrain_steps
    adv_total = min(cfg.adv_steps, cfg.max_steps - pre_total) if cfg.max_steps else cfg.adv_steps
    beta_total = cfg.beta_steps or max(adv_total, 1)
    phase = "pretrain" if pre_total > 0 else "adversarial"
    pre_step, adv_step, best_val, best_state, best_encoder = 0, 0, math.inf, None, None
    adv_start_nll = None  # val NLL of the generator the adversarial phase starts from
    if ckpt:
        check_compatible(ckpt, "gan", asdict(gen_cfg), tokenizer.itos,
                         data=cfg.data_settings())
        if ckpt["discriminator_config"] != asdict(disc_cfg):
            raise CheckpointError(f"checkpoint discriminator config {ckpt['discriminator_config']} differs from "
                                  f"this run's {asdict(disc_cfg)}")
        G.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        D.load_state_dict(ckpt["discriminator"])
        load_encoder(E, ckpt, last_path)
        for opt, key in ((opt_mle, "optimizer_mle"), (opt_g, "optimizer_g"), (opt_d, "optimizer_d")):
            if ckpt[key]:
                opt.load_state_dict(ckpt[key])
        phase, pre_step, adv_step, best_val = ckpt["phase"], ckpt["pretrain_step"], ckpt["adv_step"], ckpt["best_val"]
        adv_start_nll = ckpt.get("adv_start_nll")
        runtime.set_rng_state(ckpt["rng"])
        if dist.rank:  # the checkpoint holds rank 0's stream; keep the others apart
            torch.manual_seed(cfg.seed + 7919 * dist.rank + 104729 * (pre_step + adv_step))
        if dist.is_main:
            print(f"resumed {last_path} in the {phase} phase at step {pre_step + adv_step}")
            runtime.say_resume_changes(ckpt["train_config"], cfg, ckpt.get("environment"), runtime.environment(dist))
    elif cfg.init_from:  # another run's pretrained generator stands in for phase 1
        init = load_checkpoint(cfg.init_from)
        check_compatible(init, "gan", asdict(gen_cfg), tokenizer.itos,
                         data=cfg.data_settings())
        G.load_state_dict(init["model"])
        load_encoder(E, init, cfg.init_from)
        best_state, best_val, phase = copy.deepcopy(G.state_dict()), init["best_val"], "pretrain"
    prior_seconds = (ckpt or {}).get("train_seconds", 0.0)  # wall-clock time of the segments before a resume
    say = tqdm.write if dist.is_main else (lambda *a, **k: None)
    say(f"generator: {sum(p.numel() for p in G.parameters()):,} parameters, discriminator: "
        f"{sum(p.numel() for p in D.parameters()):,} | {corpus.name}: vocab {tokenizer.vocab_size}, "
        f"{T} tokens per sentence, {len(data.splits['train'].x):,} train sentences, {data.oov_summary()} | device {device} "
        f"{str(dtype).replace('torch.', '')}")
    # on resume, hide what a killed process logged after its last checkpoint (whose evaluation stays)
    log = RunLogger(run_dir, enabled=dist.is_main, purge_step=pre_step + adv_step + 1 if ckpt else None)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps(
            {"train": asdict(cfg), "generator": asdict(gen_cfg), "discriminator": asdict(disc_cfg)}, indent=2))
    # reference tables built once: the curves are scored against val, the final scoring against test
    evaluator = SampleEvaluator(corpus, tokenizer)
    # the yardstick of the collapse warnings: as many real training sentences, scored alike
    real_val = evaluator.score(random.Random(cfg.seed).sample(corpus.train, min(cfg.eval_samples, len(corpus.train))))
    usage_batch = next(iter(data.eval_batches("val", 64)))  # fixed real prefixes for eval/latent_mi

    def checkpoint(path):
        if not dist.is_main:
            return
        for name, module in (("generator", G), ("EMA generator", ema), ("discriminator", D)):
            bad = [n for n, p in module.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
            if bad:  # the guard's second half: never overwrite a good checkpoint with a diverged model
                kept = f"The last good checkpoint, {path}, is intact" if path.is_file() else "Nothing was saved"
                raise FloatingPointError(f"non-finite weights in the {name} ({bad[0]}, ...) at step "
                                         f"{pre_step + adv_step}; not saving. {kept}")
        save_checkpoint(path, {
            "model_name": "gan", "model_config": asdict(gen_cfg),
            "model": G.state_dict(),
            "ema": ema.state_dict(), "w_avg": G.mapping.w_avg.clone(),
            "discriminator_config": asdict(disc_cfg), "discriminator": D.state_dict(),
            "encoder": E.state_dict() if E is not None else None,
            "optimizer_mle": opt_mle.state_dict(), "optimizer_g": opt_g.state_dict(), "optimizer_d": opt_d.state_dict(),
            "tokenizer": tokenizer.state_dict(), "train_config": asdict(cfg),
            "phase": phase, "step": pre_step + adv_step, "pretrain_step": pre_step, "adv_step": adv_step,
            "beta": beta_at(adv_step), "beta_steps": beta_total, "best_val": best_val, "adv_start_nll": adv_start_nll, "rng": runtime.rng_state(),
            "environment": runtime.environment(dist), "train_seconds": prior_seconds + time.time() - t_start,
        })

    def beta_at(s):
        return beta_schedule(s, beta_total, cfg.beta_max, cfg.beta_schedule)

    def draw(gen, n, seed, psi=cfg.psi, temperature=cfg.temperature):
        if psi != 1.0:  # truncation needs the average style of this generator's mapping
            gen.mapping.estimate_w_avg(cfg.w_avg_samples, generator=torch.Generator(device=device).manual_seed(seed))
        return gan_texts(gen, tokenizer, n, T, temperature, psi, seed)

    def nll_fn(gen, split):
        """NLL per token on a split, latents from the prior (K = nll_samples): the estimator of
        every GAN run and every point of a psi sweep. With an encoder also the importance-
        sampled bound with q(z | x) as proposal (K = nll_samples): another upper bound, which
        with the free bits' KL may be the looser of the two (research/gan)."""
        out = latent_nll(gen, data.eval_batches(split, cfg.eval_batch_size), cfg.nll_samples, device, seed=cfg.seed)
        if E is not None:
            out["nll_posterior"] = posterior_nll(gen, E, data.eval_batches(split, cfg.eval_batch_size),
                                                 cfg.nll_samples, device, seed=cfg.seed)["nll"]
        return out

    def warn_collapse(scores, real, val_nll, step):
        """Collapse warnings against real data (and, adversarial phase, the NLL at its start): printed,
        logged as TensorBoard text; returns them."""
        rise = val_nll / adv_start_nll - 1 if adv_start_nll else None
        found = collapse_warnings(scores, real, rise, cfg.collapse_self_bleu, cfg.collapse_unique, cfg.collapse_nll)
        for w in found:
            say(f"warning: step {step}: {w}")
        if found:
            log.text("warnings", "  \n".join(found), step)
        return found

    def evaluate(gen, step):
        """val/nll, the periodic sample metrics and the collapse warnings; returns val/nll."""
        val = nll_fn(gen, "val")
        log.scalar("val/nll", val["nll"], step)
        log.scalar("val/bits", val["bits"], step)
        if "nll_posterior" in val:
            log.scalar("val/nll_posterior", val["nll_posterior"], step)
        log.scalar("eval/latent_mi", latent_usage(gen, *usage_batch, seed=cfg.seed), step)
        texts = draw(copy.deepcopy(gen) if cfg.psi != 1.0 else gen, cfg.eval_samples, seed=cfg.seed + step)
        scores = evaluator(texts, step, log)
        warn_collapse(scores, real_val, val["nll"], step)
        log.samples("samples", texts[:cfg.num_samples], step)
        log.flush()
        return val["nll"], scores

    @torch.no_grad()
    def vae_val_objective():
        """Posterior pretraining's own objective on val, (reconstruction NLL + free-bits KL) per
        token with z ~ q(z | x) from a fixed seed: what best-on-val selects on in that mode. The
        NLL bound (val/nll) charges the KL under the free bits in full, so it would prefer the
        early generator that ignores z, the very thing this mode is for undoing."""
        G.eval(), E.eval()
        g = torch.Generator(device=device).manual_seed(cfg.seed)
        rec, tokens, kls = 0.0, 0, []
        for x, y in data.eval_batches("val", cfg.eval_batch_size):
            x, y = x.to(device), y.to(device)
            mean, logvar = E.posterior(y)
            logits, _ = G(x, z=E.sample(mean, logvar, generator=g), noise=G.make_noise(*y.shape, generator=g))
            rec += torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=IGNORE_INDEX,
                                                     reduction="sum").item()
            tokens += int((y != IGNORE_INDEX).sum())
            kls.append(gaussian_kl(mean, logvar))
        G.train(), E.train()
        kl = torch.cat(kls)  # (sentences, z_dim)
        return (rec + kl.size(0) * free_bits_kl(kl, cfg.free_bits).item()) / tokens

    # ---- phase 1: MLE pretraining, teacher forcing with z from the prior (or the posterior)
    if cfg.max_minutes:
        reserve_final_scoring(deadline, cfg, data, G, pre_total > 0 or pre_path.exists(), nll_fn,
                              lambda n: evaluator.score(draw(copy.deepcopy(G), n, seed=0)),
                              lambda: latent_usage(G, *usage_batch, seed=cfg.seed))
    t_start = time.time()
    out_of_time = lambda minutes, since: minutes > 0 and dist.any((time.time() - since) / 60 >= minutes)  # noqa: E731
    bar = tqdm(total=pre_total + adv_total, initial=pre_step + adv_step,
               disable=not (cfg.progress and dist.is_main), dynamic_ncols=True, desc="gan")
    t_phase = time.time()
    while phase == "pretrain" and pre_step < pre_total:
        lr = runtime.lr_at(pre_step, cfg.pretrain_lr, cfg.pretrain_min_lr, cfg.warmup_steps, pre_total)
        for group in opt_mle.param_groups:
            group["lr"] = lr
        x, y = data.train_batch(pre_step, cfg.batch_size, cfg.seed)
        x, y = x[dist.rank::dist.world].to(device), y[dist.rank::dist.world].to(device)
        with amp():
            if E is None:
                _, loss = G(x, y)  # a fresh z from the prior and fresh noise per sentence
            else:  # VAE: z ~ q(z | x), reconstruct x from it; loss = (token NLL + KL) per token
                valid = y != IGNORE_INDEX
                mean, logvar = E.posterior(y)
                if cfg.word_dropout > 0:  # the decoder's inputs (not the encoder's) lose tokens to <unk>
                    drop = torch.rand(x.shape, device=device) < cfg.word_dropout
                    drop[:, 0] = False  # <bos>
                    x = x.masked_fill(drop & (x != PAD_ID), UNK_ID)
                _, rec = G(x, y, z=E.sample(mean, logvar).to(G.lm_head.weight.dtype))
                kl = gaussian_kl(mean, logvar)  # (B, z_dim)
                tokens_per_sentence = valid.sum() / valid.size(0)
                loss = rec + free_bits_kl(kl, cfg.free_bits) / tokens_per_sentence
        check_finite("pretraining loss", loss.item(), pre_step, last_path)
        opt_mle.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = step_update(mle_model, opt_mle, cfg.grad_clip, dist)
        pre_step += 1
        bar.update(1)
        if pre_step % cfg.log_interval == 0:
            log.scalars({"train/loss": loss.item(), "lr": lr, "grad_norm": grad_norm}, pre_step)
            if E is not None:  # reconstruction NLL per token, and the KL per sentence without free bits
                log.scalars({"train/rec": rec.item(), "train/kl": kl.sum(-1).mean().item()}, pre_step)
            bar.set_postfix(loss=f"{loss.item():.4f}", best_val=f"{best_val:.4f}")
        stop = out_of_time(cfg.pretrain_minutes, t_phase) or deadline.expired()
        if pre_step % cfg.eval_interval == 0 or pre_step == pre_total or stop:
            ema.load_state_dict(G.state_dict())  # no averaging while pretraining: the EMA is a copy of G
            (val, scores), seconds = timed(evaluate, G, pre_step)
            deadline.observe(seconds)
            if E is not None:  # select on the objective being trained (see vae_val_objective)
                val = vae_val_objective()
                log.scalar("val/vae_objective", val, pre_step)
            say(f"pretrain step {pre_step}: train loss {loss.item():.4f}, val {'objective' if E else 'nll'} "
                f"{val:.4f} | {brief(scores)}")
            if val < best_val:  # every rank computes the same val (same weights, same z)
                best_val, best_state = val, copy.deepcopy(G.state_dict())
                best_encoder = copy.deepcopy(E.state_dict()) if E is not None else None
                checkpoint(pre_path)
            checkpoint(last_path)
        if stop:
            say(f"pretraining stopped by its wall-clock budget at step {pre_step}")
            break
    if phase == "pretrain":  # done: the adversarial phase starts from the best-on-validation generator
        # in memory on every rank; from pretrained.pt only when this process resumed past the best
        best = {"model": best_state, "encoder": best_encoder} if best_state is not None else load_checkpoint(pre_path)
        G.load_state_dict(best["model"])
        if E is not None and best.get("encoder") is not None:  # the proposal that goes with that generator
            E.load_state_dict(best["encoder"])
        G.mapping.estimate_w_avg(cfg.w_avg_samples, generator=torch.Generator(device=device).manual_seed(cfg.seed))
        ema.load_state_dict(G.state_dict())
        if cfg.init_from:  # this run's own record of where its adversarial phase started
            checkpoint(pre_path)
        phase = "adversarial"
        adv_start_nll = nll_fn(G, "val")["nll"]  # the collapse warnings' yardstick for the NLL
        checkpoint(last_path)

    # ---- phase 2: adversarial training
    info = cfg.info_weight > 0  # InfoGAN term: D's latent head reads z back from the fakes
    new_z = lambda: torch.randn(cfg.batch_size // dist.world, z_dim, device=device,  # noqa: E731
                                dtype=G.lm_head.weight.dtype)  # drawn here, so both players know the fakes' z
    while phase == "adversarial" and adv_step < adv_total and not deadline.expired():
        step = pre_step + adv_step
        beta = beta_at(adv_step)
        relax = functools.partial(relax_fn, beta=beta)
        B = cfg.batch_size // dist.world
        # the generator step's relaxed sample, drawn first with its graph: its detached copy is
        # also the fake of the last discriminator step (one sampling pass saved per iteration;
        # sampling, a sequential loop over T steps, is most of the cost on a CPU)
        z_g = new_z()
        with amp():
            fake_g = G.sample(B, T, z=z_g, relax=relax)
        # discriminator: n_critic steps on fresh real batches and detached fakes
        D.requires_grad_(True)
        for k in range(cfg.n_critic):
            _, y = data.train_batch(adv_step * cfg.n_critic + k, cfg.batch_size, cfg.seed + 1)
            real, real_mask = real_inputs(pad_to(y[dist.rank::dist.world], T).to(device), tokenizer.vocab_size)
            if k == cfg.n_critic - 1:
                z, fake = z_g, {"soft": fake_g["soft"].detach(), "mask": fake_g["mask"]}
            else:
                z = new_z()
                with torch.no_grad(), amp():
                    fake = G.sample(B, T, z=z, relax=relax)
            with amp():
                d_real, d_fake = D(real, real_mask), D(fake["soft"], fake["mask"], return_latent=info)
                if info:  # Q (D's latent head) learns to read z back from the fake
                    d_fake, z_pred = d_fake
                    info_d = info_loss(z_pred, z)
                loss_d = d_loss_fn(d_real, d_fake)
                if info:
                    loss_d = loss_d + cfg.info_weight * info_d
                if cfg.loss == "wgan-gp":
                    loss_d = loss_d + gradient_penalty(D, real, fake["soft"], real_mask | fake["mask"], cfg.gp_weight)
                if cfg.r1_gamma > 0:
                    loss_d = loss_d + r1_penalty(D, real, real_mask, cfg.r1_gamma)
            check_finite("discriminator loss", loss_d.item(), step, last_path)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            grad_norm_d = step_update(D, opt_d, cfg.grad_clip, dist)
        # generator: one step through the relaxed sample into the updated D, D frozen (the last
        # real batch for rsgan's pairs)
        D.requires_grad_(False)
        fake = fake_g
        with amp():
            d_fake_g = D(fake["soft"], fake["mask"], return_latent=info)
            if info:  # ... and G to write z into the sentence so that Q can
                d_fake_g, z_pred = d_fake_g
                info_g = info_loss(z_pred, z_g)
            loss_g = g_loss_fn(D(real, real_mask), d_fake_g)
            if info:
                loss_g = loss_g + cfg.info_weight * info_g
        check_finite("generator loss", loss_g.item(), step, last_path)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm_g = step_update(G, opt_g, cfg.grad_clip, dist)
        G.mapping.update_w_avg(fake["w"])
        ema_update(ema, G, cfg.ema_decay)
        adv_step += 1
        step += 1
        bar.update(1)
        if adv_step % cfg.log_interval == 0:
            log.scalars({"gan/d_loss": loss_d.item(), "gan/g_loss": loss_g.item(), "gan/d_real": d_real.mean().item(),
                         "gan/d_fake": d_fake.mean().item(), "gan/grad_norm_d": grad_norm_d,
                         "gan/grad_norm_g": grad_norm_g, "gan/beta": beta}, step)
            if info:  # per-dimension NLL of z under Q, without 0.5 log 2 pi (0.5 = Q knows nothing)
                log.scalars({"gan/info_d": info_d.item(), "gan/info_g": info_g.item()}, step)
            bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}", beta=f"{beta:.1f}")
        stop = deadline.expired()
        if adv_step % cfg.eval_interval == 0 or adv_step == adv_total or stop:
            (val, scores), seconds = timed(evaluate, ema, step)
            deadline.observe(seconds)
            say(f"adversarial step {adv_step}: d_loss {loss_d.item():.4f}, g_loss {loss_g.item():.4f}, "
                f"beta {beta:.1f}, EMA val nll {val:.4f} | {brief(scores)}")
            checkpoint(last_path)
        if stop:
            say(f"wall-clock budget of {cfg.max_minutes} min reached at adversarial step {adv_step}")
    bar.close()
    train_seconds = prior_seconds + time.time() - t_start  # accumulated across resumes
    dist.close()
    if not dist.is_main:  # the final scoring reads rank 0's files and writes the run's results
        return {}

    # ---- final: the EMA generator (and the pretrained one, for reference), on test and in samples
    results = {"steps": pre_step + adv_step, "pretrain_steps": pre_step, "adv_steps": adv_step,
               "train_seconds": train_seconds, "temperature": cfg.temperature, "psi": cfg.psi,
               "nll_K": cfg.nll_samples, "references": "test", "data/oov_val": data.oov["val"],
               "data/oov_test": data.oov["test"]}
    tester = SampleEvaluator(corpus, tokenizer, references="test")  # test is read here, once
    finals = {"ema": ema}
    if pre_path.exists():
        pretrained = copy.deepcopy(G)
        pretrained.load_state_dict(load_checkpoint(pre_path)["model"])
        finals["pretrained"] = pretrained.eval()
    texts = {}
    for name, gen in finals.items():
        for split in ("val", "test"):
            nll = nll_fn(gen, split)
            results[f"{name}/{split}_nll"] = nll["nll"]
            if "nll_posterior" in nll:
                results[f"{name}/{split}_nll_posterior"] = nll["nll_posterior"]
        results[f"{name}/latent_mi"] = latent_usage(gen, *usage_batch, seed=cfg.seed)
        texts[name] = draw(copy.deepcopy(gen), cfg.final_samples, seed=cfg.seed)
        for k, v in tester.score(texts[name]).items():
            results[f"{name}/{k}"] = v
    real_test = tester.score(random.Random(cfg.seed).sample(corpus.train, min(cfg.final_samples, len(corpus.train))))
    ema_scores = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith("ema/")}
    results["adv_nll_rise"] = results["ema/val_nll"] / adv_start_nll - 1 if adv_start_nll else None
    results["warnings"] = warn_collapse(ema_scores, real_test, results["ema/val_nll"], pre_step + adv_step)
    log.samples("samples/final", texts["ema"][:cfg.num_samples], pre_step + adv_step)
    log.hparams({**asdict(cfg), **{f"generator.{k}": v for k, v in asdict(gen_cfg).items() if k != "mapping"},
                 **{f"mapping.{k}": v for k, v in asdict(gen_cfg.mapping).items()},
                 **{f"discriminator.{k}": v for k, v in asdict(disc_cfg).items()}},
                {"hparam/test_nll": results["ema/test_nll"], "hparam/unique_share": results["ema/unique_share"]},
                pre_step + adv_step)
    log.close()
    write_text(run_dir / "metrics.json", json.dumps(results, indent=2))
    write_text(run_dir / "samples.txt", "\n".join(texts["ema"]) + "\n")
    say("\n".join(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in results.items()
                  if k != "warnings"))
    say("samples (EMA generator):\n" + "\n".join("  " + t for t in texts["ema"][:cfg.num_samples]))
    say(f"run directory: {run_dir}  (tensorboard --logdir {cfg.out_dir}); {deadline.summary()}")
    lock.release()
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


def load_encoder(E, ckpt, path):
    """The posterior encoder's weights from a checkpoint, when this run has one."""
    if E is None:
        return
    if ckpt.get("encoder") is None:
        raise CheckpointError(f"{path} has no posterior encoder (it was pretrained with pretrain_latent = 'prior'); "
                              "use the same pretrain_latent as the run that wrote it")
    E.load_state_dict(ckpt["encoder"])


def brief(scores):
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())


def step_update(model, optimizer, grad_clip, dist):
    """Average gradients over ranks (the sampler's many small forwards rule out DDP's hooks),
    clip, step; returns the gradient norm before clipping."""
    if dist.enabled:
        import torch.distributed as tdist
        for p in model.parameters():
            if p.grad is not None:
                tdist.all_reduce(p.grad)
                p.grad /= dist.world
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    return norm.item()

