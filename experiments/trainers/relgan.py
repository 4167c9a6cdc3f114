"""The RelGAN-style trainer behind `python -m experiments.train_relgan` (and experiments.compare's
`relgan` family): Nie et al. 2019, "RelGAN: Relational Generative Adversarial Networks for Text
Generation", an MLE-pretrained generator trained adversarially through the Gumbel-softmax
relaxation with an annealed inverse temperature, against a CNN discriminator, with the
relativistic standard GAN loss. A baseline beside SeqGAN's (experiments/trainers/seqgan.py):
the same generator, data protocol, run session, evaluation and scoring, so the two differ only in
how the discriminator's signal reaches the generator (a Monte Carlo policy gradient there, a
gradient through relaxed samples here).

The parts: the generator is the LSTM language model of baselines/rnn.py (LSTMConfig, the
[generator] section; SeqGAN's oracle sizes and N(0, 0.1) init are the defaults), scored by
scoring.nll.lm_nll and rebuilt from its checkpoint like any LM; the discriminator is
gan/cnn_discriminator.py ([discriminator]) reading soft one-hot rows, with RelGAN's filter
widths and counts as the defaults; the relaxed sampling and the beta schedules are gan/relgan.py;
the losses gan/losses.py's rsgan pair.

Two phases, one run directory, as in the released code (run.py, oracle/oracle_gan/oracle_train.py):
1. MLE pretraining of G: teacher forcing through experiments.core.session.mle_step, Adam
   (0.9, 0.999) at a constant pretrain_lr (RelGAN: 1e-2), batch 64, gradient norm clipped at 5.
   The loop is SeqGAN's too (recurrent_gan.pretrain): validation NLL every eval_interval steps, then the
   best-on-validation (pretrain_select = "val") or the last generator ("last", RelGAN's: it
   selects nothing) is pretrained.pt and where the adversarial phase starts.
2. Adversarial steps (adv_steps; RelGAN: nadv_steps). Step n: beta_n from the schedule (exp:
   beta_max ** (n / N), N = beta_steps or adv_steps); one generator step: a batch of relaxed
   samples from G (gan/relgan.relaxed_sample: hard Gumbel-max tokens fed back, soft one-hots
   softmax(beta_n (o_t + g_t)) to D), the RSGAN loss BCE(D(fake) - D(real), 1) against a fresh
   real batch, its gradient through D (frozen) into G, Adam at g_lr = 1e-4, norm clipped at 5;
   then d_steps = 5 discriminator steps, each on a fresh real batch and fresh relaxed fakes
   (no graph into G), loss BCE(D(real) - D(fake), 1), Adam at d_lr = 1e-4, norm clipped at 5.
   The generator at the end is what gets scored (RelGAN selects nothing).

Sequence protocol: the corpus's `fixed_length` (getattr, 0 when absent), as SeqGAN's trainer.
0: sequences end with <eos> (at most the data's block_size tokens), D reads <pad> after the end;
L > 0 (SeqGAN's oracle, L = 20): exactly L tokens, no special token ever sampled (their logits
masked). Real sentences reach D as token ids, fakes as soft one-hot rows; D embeds a one-hot row
exactly as its id (gan/cnn_discriminator.py), so the two are read alike.

Deviations from the paper and its code, each a setting unless said otherwise:
- Generator: the LSTM (RelGAN's lstm_vanilla, its synthetic-data ablation), not the relational
  memory core. The RMC (mem_slots 1, 2 heads of 256: a 512-wide state and output layer) would
  cost about 16 times the LSTM's output layer per token on a CPU and needs a new model file,
  and with the LSTM the comparison with SeqGAN isolates the training signal: same generator,
  same init. Its init is SeqGAN's N(0, 0.1) (RelGAN: truncated normal, std 1/sqrt(fan-in),
  zero biases), with baselines/rnn.py's learned start state and <bos> input (RelGAN: zero
  state, token 0 as the first input).
- Discriminator: SeqGAN's CNN + highway (gan/cnn_discriminator.py, its init but for the
  embedding, which is RelGAN's: `relgan_embedding_init`) at RelGAN's widths (filters 2, 3, 4,
  5, 300 each, embedding 64, dropout 0.25 before the output), reading soft one-hots through its
  embedding (row @ W); one raw score per sequence, the log-odds of its two-way head. Not
  RelGAN's "multiple embedded representations" (num_rep = 64 one-wide embeddings, each
  convolved and scored separately, B x 64 logits per batch): that multiplies
  the highway and output layers' work by 64 and would be a second discriminator model; and no
  extra 100-wide linear layer before the logit (RelGAN has one, with no nonlinearity, so it
  adds nothing a single linear map does not). D's dropout is on in both players' steps, as in
  RelGAN's graph.
- Temperature: N of the schedule is beta_steps, by default this run's adv_steps (TextGAN-PyTorch's
  choice); RelGAN's code fixes N = 5000 whatever the run's length (beta_steps = 5000), so its
  3,000-step oracle runs end at beta_max ** 0.6. Step n trains with beta_n (RelGAN's with
  beta_{n-1}, updated after the step: one step's shift). beta_max is RelGAN's synthetic-data
  setting 100 by default (its real-data runs: 1000).
- Budgets (experiments/configs/relgan/oracle.toml, a setting each): far fewer MLE epochs and
  adversarial steps than RelGAN's 150 / 3,000 on the oracle, and so a generator rate g_lr
  ten times RelGAN's there (1e-3, 100 steps). At RelGAN's 1e-4 the generator moves about ten
  times slower: on seqgan_oracle it took 800 steps (16 CPU minutes) to bring NLL-oracle from
  9.03 to 8.72. The defaults here are RelGAN's.
- The sparsity problem, as in RelGAN at small beta: soft rows at beta near 1 are far from
  one-hot, so D separates them from real rows by their spread as much as by their words, and the
  generator's gradient largely sharpens its distributions: NLL-oracle falls, NLL-test rises.
  As beta grows, D reads the text again and the generator returns towards the data (measured
  on seqgan_oracle with g_lr 1e-3, N = adv_steps = 200, beta_max 100: NLL-oracle 9.03 dips to
  8.83 while beta < 6, then climbs back to 8.98 by beta 100).
- Real batches: the adversarial phase walks seeded epochs of the training split (RelGAN: a
  uniformly random batch each time).
- Variable-length corpora: TextDuel's extension (RelGAN pads every sentence to a fixed length
  and lets the generator write the pad token as a word): <eos> ends a sample, one-hot <pad>
  rows follow it, and the gradient reaches G through every position up to the end.

Reproducibility and resume: pretraining batches are a function of (seed, step), the adversarial
phase's real batches of (seed, step, k); every relaxed sample draws its Gumbel noise from its own
torch.Generator seeded from (seed, step, which player, k); only D's dropout draws from the
global RNG, whose state last.pt holds. last.pt (written after evaluations, at ckpt_interval and at
the end of each phase) holds G, D, the three Adam optimisers, phase and step counters, best_val,
the RNG and the configs, so a resumed run ends bit-identical to the uninterrupted one
(tests/test_relgan.py); a learning rate changed on resume takes effect (Adam's load_state_dict
alone would keep the checkpoint's). The phases are "pretrain" and "adversarial" (SeqGAN's have
"d_pretrain" between them). The run session
(experiments/core/session.py) gives the lock, the divergence guard on every optimizer step,
atomic checkpoints, config.json, metrics.json, samples.txt and TensorBoard.

TensorBoard: train/loss, lr, grad_norm (pretraining); gan/d_loss, gan/g_loss, gan/d_real and
gan/d_fake (mean raw scores of the last D step), gan/grad_norm_d, gan/grad_norm_g, gan/beta every
log_interval adversarial steps; at every evaluation val/nll, val/bits and the sample metrics of
experiments.scoring.samples under eval/ (eval/nll_oracle on the oracle corpora), eval/beta in the
adversarial phase, text samples, collapse warnings; hparams at the end. The x axis is the step
count of both phases (pretraining steps + adversarial steps).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from baselines.rnn import LSTMConfig
from experiments.core import runtime
from experiments.core.budget import Deadline, timed
from experiments.core.session import optimizer_update
from experiments.scoring.samples import brief
from experiments.trainers import recurrent_gan as rgan
from experiments.trainers.recurrent_gan import RecurrentGANConfig, RecurrentGANRun, stream
from gan import relgan, seqgan
from gan.cnn_discriminator import CNNDiscriminator, CNNDiscriminatorConfig
from gan.losses import d_loss_rsgan, g_loss_rsgan


@dataclass
class RelGANTrainConfig(RecurrentGANConfig):
    """The settings of recurrent_gan.RecurrentGANConfig at RelGAN's values, and RelGAN's own."""
    beta1: float = 0.9             # Adam's betas, all three optimisers (RelGAN: 0.9, 0.999)
    beta2: float = 0.999
    pretrain_steps: int = 2000     # teacher-forcing steps (RelGAN: 150 epochs of its 10,000 oracle sequences)

    # --- phase 2: adversarial training
    adv_steps: int = 1000          # generator steps, each followed by d_steps D steps (RelGAN: 3,000 on the oracle)
    g_lr: float = 1e-4             # generator's Adam in the adversarial phase (RelGAN: 1e-4)
    d_steps: int = 5               # D steps per generator step, each on fresh real and fake batches (RelGAN: 5)
    beta_max: float = 100.0        # inverse temperature at the end of the schedule (RelGAN: 100 synthetic, 1000 real)
    beta_schedule: str = "exp"     # RelGAN's: no | lin | exp | log | sigmoid | quad | sqrt (gan/relgan.py)
    beta_steps: int = 0            # N of the schedule (exp: beta_max at step N); 0 = adv_steps (RelGAN's code: 5000
                                   # whatever the run's length, so its 3,000-step oracle runs end at beta_max ** 0.6)
    d_grad_clip: float = 5.0       # max gradient norm of D's updates (RelGAN: 5); 0 = off

    def __post_init__(self):
        super().__post_init__()
        self._check("RelGANTrainConfig", lambda v: v >= 0, "must be >= 0", "beta_steps")
        if self.pretrain_steps == self.adv_steps == 0:
            raise ValueError("nothing to train: pretrain_steps and adv_steps are both 0")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"Adam's beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.beta_schedule not in relgan.BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {sorted(relgan.BETA_SCHEDULES)}, "
                             f"got {self.beta_schedule!r}")
        if not (self.beta_max >= 1.0 and math.isfinite(self.beta_max)):
            raise ValueError(f"beta_max must be >= 1 (the schedules start at 1), got {self.beta_max}")


def parse_args(argv):
    """defaults <- config file <- command line, for the three sections. The generator starts from
    SeqGAN's oracle LSTM (width 32, N(0, 0.1) init), the discriminator from RelGAN's widths (2..5,
    300 filters each, embedding 64) with no L2 term (RelGAN's loss is RSGAN alone)."""
    return rgan.parse_sections(RelGANTrainConfig(), LSTMConfig(n_embd=32, n_embd2=32, init_std=0.1),
                               CNNDiscriminatorConfig(n_embd=64, filter_sizes="2,3,4,5",
                                                      num_filters="300,300,300,300", l2_reg=0.0), argv)


@torch.no_grad()
def relgan_embedding_init(D: CNNDiscriminator) -> None:
    """D's embedding as RelGAN's (create_linear_initializer(vocab_size)): truncated normal, std
    1/sqrt(V), cut at two standard deviations. With SeqGAN's U(-1, 1) a one-hot row embeds far
    from a soft row at beta near 1 (nearly the mean of many embeddings, near 0): on seqgan_oracle
    after MLE, D's mean scores of real and fake differed by ~38 at the first step, its RSGAN loss
    was saturated, gan/grad_norm_d stayed 0 over 200 steps and the generator chased a frozen
    random network. At RelGAN's scale the gap starts near 2.5 and D learns."""
    V = D.wte.weight.size(0)
    torch.nn.init.trunc_normal_(D.wte.weight, std=V ** -0.5, a=-2 * V ** -0.5, b=2 * V ** -0.5)


def run_dir_of(cfg) -> Path:
    """out_dir/run_name; the default run name is <dataset>-relgan."""
    return rgan.run_dir_of(cfg, "relgan")


class RelGANRun(RecurrentGANRun):
    """RecurrentGANRun with RelGAN's discriminator (its embedding init), Adam betas and beta schedule."""

    name, title = "relgan", "RelGAN"
    phases = ("pretrain", "adversarial")

    def __init__(self, cfg: RelGANTrainConfig, gen_cfg, disc_cfg, dist):
        self._start(cfg, gen_cfg, disc_cfg, dist)
        budget = cfg.max_steps or math.inf  # shared by the phases, in order
        self.pre_total = int(min(cfg.pretrain_steps, budget))
        self.adv_total = int(min(cfg.adv_steps, budget - self.pre_total))
        self.phase = "pretrain"  # with no MLE step, recurrent_gan.pretrain goes straight on to the adversarial phase
        if self.session.ckpt:
            self.restore(self.session.ckpt)

    def _networks(self, cfg, gen_cfg, disc_cfg) -> None:
        """G, D and RelGAN's three Adam optimisers: MLE pretraining, the adversarial generator, D."""
        self._sized(gen_cfg, disc_cfg)
        self.D = CNNDiscriminator(self.disc_cfg).to(self.device)
        relgan_embedding_init(self.D)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_mle = torch.optim.Adam(self.G.parameters(), lr=cfg.pretrain_lr, betas=betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=betas)

    def restore(self, ckpt: dict) -> None:
        cfg = self.cfg
        self.restore_common(ckpt, {"optimizer_mle": cfg.pretrain_lr, "optimizer_g": cfg.g_lr, "optimizer_d": cfg.d_lr},
                            betas=(cfg.beta1, cfg.beta2))
        self.session.resumed(f"in the {self.phase} phase at step {self.step}")

    @property
    def step(self) -> int:
        """Steps of both phases: the x axis of every curve."""
        return self.pre_step + self.adv_step

    def beta_at(self, n: int) -> float:
        """beta of adversarial step n: the schedule spans beta_steps or the configured adv_steps, so a run
        stopped early by max_steps or max_minutes and resumed without them anneals exactly as one that was not."""
        cfg = self.cfg
        return relgan.beta_at(n, cfg.beta_steps or cfg.adv_steps, cfg.beta_max, cfg.beta_schedule)

    def checkpoint(self, path) -> None:
        self.session.save(path, self.common_state(), {"generator": self.G, "discriminator": self.D}, self.step)

    def after_pretraining(self) -> None:
        rgan.start_adversarial_phase(self)  # RelGAN pretrains no discriminator

    def evaluate(self) -> tuple[float, dict]:
        """recurrent_gan's evaluation of G (val/nll, the sample metrics, text samples, collapse warnings),
        and in the adversarial phase eval/beta, the inverse temperature of the last step."""
        val, scores = super().evaluate()
        if self.adv_step:
            self.session.log.scalar("eval/beta", self.beta_at(self.adv_step - 1), self.step)
        return val, scores


# ---------------------------------------------------------------------------------------
# phase 2: adversarial training (phase 1 is recurrent_gan.pretrain)


def real_ids(run: RelGANRun, k: int):
    """The k-th real batch of the adversarial phase as D reads it: token ids (B, T), <pad> after the
    end (batches walk seeded epochs of train, in another order than pretraining's)."""
    _, y = run.data.train_batch(k, run.cfg.batch_size, run.cfg.seed + 1)
    return seqgan.as_ids(seqgan.pad_targets(y, run.T)).to(run.device)


def generator_step(run: RelGANRun, beta: float) -> dict:
    """One generator step: relaxed samples with their graph, RSGAN's generator loss against a real
    batch, the gradient through D (frozen; its dropout on, as in RelGAN) into G."""
    cfg, G, D = run.cfg, run.G, run.D
    real = real_ids(run, run.adv_step * (1 + cfg.d_steps))
    g = stream(run.device, cfg.seed, "adversarial", run.adv_step, "G")
    soft, _ = relgan.relaxed_sample(G, cfg.batch_size, run.T, run.fixed_length, beta, g)  # (B, T, V)
    D.requires_grad_(False)  # the gradient flows through D's input only
    loss = g_loss_rsgan(D.logit(real), D.logit(soft))
    D.requires_grad_(True)
    run.session.guard.check("generator loss", loss.item(), run.step)
    run.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = optimizer_update(G, run.opt_g, cfg.grad_clip, run.session.guard, run.step)
    return {"gan/g_loss": loss.item(), "gan/grad_norm_g": grad_norm}


def discriminator_step(run: RelGANRun, beta: float, k: int) -> dict:
    """The k-th D step of this adversarial step: fresh real and relaxed fake batches (no graph into
    G), RSGAN's discriminator loss (+ l2_reg times the output layer's L2, 0 by default)."""
    cfg, D = run.cfg, run.D
    real = real_ids(run, run.adv_step * (1 + cfg.d_steps) + 1 + k)
    with torch.no_grad():
        g = stream(run.device, cfg.seed, "adversarial", run.adv_step, "D", k)
        soft, _ = relgan.relaxed_sample(run.G, cfg.batch_size, run.T, run.fixed_length, beta, g)
    d_real, d_fake = D.logit(real), D.logit(soft)  # (B,) raw scores
    loss = d_loss_rsgan(d_real, d_fake)
    if run.disc_cfg.l2_reg:
        loss = loss + run.disc_cfg.l2_reg * D.l2_penalty()
    run.session.guard.check("discriminator loss", loss.item(), run.step)
    run.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = optimizer_update(D, run.opt_d, cfg.d_grad_clip, run.session.guard, run.step)
    return {"gan/d_loss": loss.item(), "gan/d_real": d_real.mean().item(), "gan/d_fake": d_fake.mean().item(),
            "gan/grad_norm_d": grad_norm}


def adversarial(run: RelGANRun, deadline: Deadline, bar) -> None:
    """Per step: beta from the schedule, one generator step, then d_steps D steps (RelGAN's order)."""
    cfg, session = run.cfg, run.session
    while run.phase == "adversarial" and run.adv_step < run.adv_total and not deadline.expired():
        t_step = time.perf_counter()
        beta = run.beta_at(run.adv_step)
        g = generator_step(run, beta)
        for k in range(cfg.d_steps):
            d = discriminator_step(run, beta, k)
        session.time_step(time.perf_counter() - t_step, "adversarial")
        run.adv_step += 1
        bar.update(1)
        if run.adv_step % cfg.log_interval == 0:
            session.log.scalars({**g, **d, "gan/beta": beta}, run.step)
            bar.set_postfix(g=f"{g['gan/g_loss']:.3f}", d=f"{d['gan/d_loss']:.3f}", beta=f"{beta:.1f}")
        stop = deadline.expired()
        due = session.due(run.adv_step, run.adv_total, stop, every=cfg.adv_eval_interval)
        if due == "eval":
            (val, scores), seconds = timed(run.evaluate)
            deadline.observe(seconds)
            session.say(f"adversarial step {run.adv_step}: beta {beta:.2f}, g_loss {g['gan/g_loss']:.4f}, d_loss "
                        f"{d['gan/d_loss']:.4f}, val nll {val:.4f} | {brief(scores)}")
        if due:
            run.checkpoint(session.last_path)
        if stop:
            session.say(f"wall-clock budget of {cfg.max_minutes} min reached at adversarial step {run.adv_step}")


# ---------------------------------------------------------------------------------------
# the command


def describe(run: RelGANRun) -> str:
    return (f"RelGAN-style generator ({rgan.GENERATOR}): {sum(p.numel() for p in run.G.parameters()):,} parameters, "
            f"CNN discriminator on soft one-hots: {sum(p.numel() for p in run.D.parameters()):,} | "
            f"{run.corpus.name}: vocab {run.tokenizer.vocab_size}, {rgan.protocol(run)}, "
            f"{len(run.data.splits['train']):,} train sequences, {run.data.oov_summary()} | beta 1 -> "
            f"{run.cfg.beta_max:g} ({run.cfg.beta_schedule}) over {run.cfg.adv_steps} steps | device {run.device}")


def check_budget(argv) -> None:
    rgan.check_budget(RelGANRun, parse_args, argv)


def main(argv=None):
    cfg, gen_cfg, disc_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    run = RelGANRun(cfg, gen_cfg, disc_cfg, dist)
    bar = rgan.begin(run, deadline, describe(run), run.pre_total + run.adv_total)
    rgan.pretrain(run, deadline, bar)  # ends by starting the adversarial phase
    adversarial(run, deadline, bar)
    bar.close()
    beta = run.beta_at(run.adv_step - 1) if run.adv_step else None  # the last step's
    results, texts = rgan.final_scoring(run, run.session.train_seconds(), {"beta": beta})
    return rgan.finish(run, deadline, results, texts)
