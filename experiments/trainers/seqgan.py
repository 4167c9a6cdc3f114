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
uninterrupted one (tests/test_seqgan.py); a learning rate changed on resume takes effect. What
this trainer shares with the RelGAN-style one (settings, the MLE phase, evaluation, final scoring)
is experiments/trainers/recurrent_gan.py. The run session (experiments/core/session.py) gives
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
from experiments.trainers.recurrent_gan import RecurrentGANConfig, RecurrentGANRun, generate, stream
from gan import seqgan
from gan.cnn_discriminator import CNNDiscriminator, CNNDiscriminatorConfig, discriminator_loss


@dataclass
class SeqGANTrainConfig(RecurrentGANConfig):
    """The settings of recurrent_gan.RecurrentGANConfig at SeqGAN's values, and SeqGAN's own."""
    # --- phase 2: D pretraining
    d_pretrain_rounds: int = 10    # rounds of fresh negatives + d_epochs epochs of D (SeqGAN: 50)

    # --- phase 3: adversarial training
    adv_steps: int = 50            # adversarial rounds: 1 generator step, then d_steps D rounds (SeqGAN: 200)
    g_lr: float = 0.01             # generator's policy-gradient Adam (SeqGAN: 0.01, its own optimiser)
    n_rollouts: int = 16           # Monte Carlo rollouts per prefix (SeqGAN: 16)
    update_rate: float = 0.8       # rollout network <- update_rate * itself + (1 - update_rate) * G (SeqGAN: 0.8)
    d_epochs: int = 3              # epochs of D over each round's positives and negatives (SeqGAN: 3)
    d_samples: int = 0             # positives per D round, drawn afresh from train, and as many negatives;
                                   # 0 = the whole training split (SeqGAN: all 10,000)
    d_batch_size: int = 64         # D's batch (SeqGAN: 64)
    d_grad_clip: float = 0.0       # max gradient norm of D's updates; 0 = off (SeqGAN does not clip D)

    def __post_init__(self):
        super().__post_init__()
        self._check("SeqGANTrainConfig", lambda v: v > 0, "must be positive", "n_rollouts", "d_epochs", "d_batch_size")
        self._check("SeqGANTrainConfig", lambda v: v >= 0, "must be >= 0", "d_pretrain_rounds", "d_samples")
        if self.pretrain_steps == self.d_pretrain_rounds == self.adv_steps == 0:
            raise ValueError("nothing to train: pretrain_steps, d_pretrain_rounds and adv_steps are all 0")
        if not 0.0 <= self.update_rate <= 1.0:
            raise ValueError(f"update_rate must be in [0, 1], got {self.update_rate}")


def parse_args(argv):
    """defaults <- config file <- command line, for the three sections. The generator's section
    starts from SeqGAN's sizes (embedding and hidden width 32) and init (N(0, 0.1)), not LSTMConfig's own defaults."""
    return rgan.parse_sections(SeqGANTrainConfig(), LSTMConfig(n_embd=32, n_embd2=32, init_std=0.1),
                               CNNDiscriminatorConfig(), argv)


def run_dir_of(cfg) -> Path:
    """out_dir/run_name; the default run name is <dataset>-seqgan."""
    return rgan.run_dir_of(cfg, "seqgan")


class SeqGANRun(RecurrentGANRun):
    """RecurrentGANRun with SeqGAN's rollout network, its D pretraining phase and counters."""

    name, title = "seqgan", "SeqGAN"
    phases = ("pretrain", "d_pretrain", "adversarial")

    def __init__(self, cfg: SeqGANTrainConfig, gen_cfg, disc_cfg, dist):
        self._start(cfg, gen_cfg, disc_cfg, dist)
        budget = cfg.max_steps or float("inf")  # shared by the phases, in order
        self.pre_total = int(min(cfg.pretrain_steps, budget))
        self.d_total = int(min(cfg.d_pretrain_rounds, budget - self.pre_total))
        self.adv_total = int(min(cfg.adv_steps, budget - self.pre_total - self.d_total))
        self.phase = "pretrain" if self.pre_total else "d_pretrain"
        self.d_step = 0
        if self.session.ckpt:
            self.restore(self.session.ckpt)

    def _networks(self, cfg, gen_cfg, disc_cfg) -> None:
        """G, its rollout copy, D and SeqGAN's three Adam optimisers: MLE pretraining, policy gradient, D."""
        self._sized(gen_cfg, disc_cfg)
        self.rollout = copy.deepcopy(self.G).requires_grad_(False)  # set from G when the adversarial phase starts
        self.D = CNNDiscriminator(self.disc_cfg).to(self.device)
        self.opt_mle = torch.optim.Adam(self.G.parameters(), lr=cfg.pretrain_lr)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr)

    def restore(self, ckpt: dict) -> None:
        cfg = self.cfg
        self.restore_common(ckpt, {"optimizer_mle": cfg.pretrain_lr, "optimizer_g": cfg.g_lr,
                                   "optimizer_d": cfg.d_lr})
        self.rollout.load_state_dict(ckpt["rollout"])
        self.d_step = ckpt["d_pretrain_round"]
        self.session.resumed(f"in the {self.phase} phase at step {self.step}")

    @property
    def step(self) -> int:
        """Steps of all phases: the x axis of every curve."""
        return self.pre_step + self.d_step + self.adv_step

    def checkpoint(self, path) -> None:
        self.session.save(path, {**self.common_state(), "rollout": self.rollout.state_dict(),
                                 "d_pretrain_round": self.d_step},
                          {"generator": self.G, "rollout network": self.rollout, "discriminator": self.D}, self.step)

    def after_pretraining(self) -> None:
        self.phase = "d_pretrain"
        self.checkpoint(self.session.last_path)


# ---------------------------------------------------------------------------------------
# the discriminator's rounds (phase 2, and d_steps per adversarial round; phase 1 is recurrent_gan.pretrain)


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
    if run.phase == "d_pretrain" and run.d_step >= run.cfg.d_pretrain_rounds:  # all of them: a budget stop
        start_adversarial_phase(run)                                            # leaves the phase open


# ---------------------------------------------------------------------------------------
# phase 3: adversarial training


def start_adversarial_phase(run: SeqGANRun) -> None:
    """The rollout network starts as a copy of G; then the phase starts as RelGAN's does."""
    run.rollout.load_state_dict(run.G.state_dict())
    rgan.start_adversarial_phase(run)


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
# the command


def describe(run: SeqGANRun) -> str:
    return (f"SeqGAN generator ({rgan.GENERATOR}): {sum(p.numel() for p in run.G.parameters()):,} parameters, CNN "
            f"discriminator: {sum(p.numel() for p in run.D.parameters()):,} | {run.corpus.name}: vocab "
            f"{run.tokenizer.vocab_size}, {rgan.protocol(run)}, {len(run.data.splits['train']):,} train sequences, "
            f"{run.data.oov_summary()} | device {run.device}")


def check_budget(argv) -> None:
    rgan.check_budget(SeqGANRun, parse_args, argv)


def main(argv=None):
    cfg, gen_cfg, disc_cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = runtime.Distributed(cfg.device)
    deadline = Deadline(cfg.max_minutes, dist)  # the whole run, final scoring included
    run = SeqGANRun(cfg, gen_cfg, disc_cfg, dist)
    bar = rgan.begin(run, deadline, describe(run), run.pre_total + run.d_total + run.adv_total)
    rgan.pretrain(run, deadline, bar)
    d_pretrain(run, deadline, bar)
    adversarial(run, deadline, bar)
    bar.close()
    results, texts = rgan.final_scoring(run, run.session.train_seconds(), {
        "d_pretrain_rounds": run.d_step, "ms_per_d_pretrain_round": run.session.ms_per_step("d_pretrain")})
    return rgan.finish(run, deadline, results, texts)
