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

Where the code is: this file holds the settings (GANTrainConfig), the final scoring and main;
gan_run.py the run's state (GANRun: networks, optimisers, checkpoints, evaluation); gan_phases.py
the two phases' loops and steps.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import asdict, dataclass

from tqdm import tqdm

from datasets import DataConfig
from experiments.core import config as cfglib
from experiments.core import budget, runtime
from experiments.core.budget import PROBE_SAMPLES, Deadline, probe
from experiments.generators.generation import is_hf_folder
from experiments.scoring.samples import NLL_RISE_MARGIN, SELF_BLEU_MARGIN, UNIQUE_MARGIN
from experiments.trainers.gan_phases import adversarial, pretrain
from experiments.trainers.gan_run import GANRun, run_dir_of  # noqa: F401  (run_dir_of: where a run goes)
from gan import LOSSES, RELAXATIONS, DiscriminatorConfig, GeneratorConfig, MappingConfig


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
                                   # (block_size): the same results, more compute
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
        reserve(deadline, run)
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


def reserve(deadline, run: GANRun) -> None:
    reserve_final_scoring(deadline, run.cfg, run.data, run.G, run.pre_total > 0 or run.pre_path.exists(), run.nll,
                          lambda n: run.evaluator.score(run.draw(copy.deepcopy(run.G), n, seed=0)),
                          lambda: run.usage(run.G))


def check_budget(argv) -> None:
    """A max_minutes the final scoring alone would eat, refused without training (budget.check_budget)."""
    cfg, gen_cfg, disc_cfg = parse_args(argv)
    budget.check_budget(cfg, lambda c: GANRun(c, gen_cfg, disc_cfg, runtime.Distributed(c.device)), reserve)


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
