"""The two phases of a GAN run, each a loop over one GANRun (gan_run.py): MLE pretraining by
teacher forcing (z from the prior, or the posterior of a VAE), then adversarial training (n_critic
discriminator steps and one generator step through its relaxed sample). The command: gan.py."""

from __future__ import annotations

import copy
import functools
import time

import torch

from datasets.tokenizers import IGNORE_INDEX, PAD_ID, UNK_ID
from experiments.core import runtime
from experiments.core.budget import Deadline, timed
from experiments.core.checkpoint import load_checkpoint
from experiments.core.session import mle_step, optimizer_update
from experiments.generators.generation import banned_ids
from experiments.scoring.samples import brief
from experiments.trainers.gan_run import GANRun, pad_to
from gan import LOSSES, RELAXATIONS, ema_update, free_bits_kl, gaussian_kl, gradient_penalty, info_loss, r1_penalty, real_inputs
from gan.relax import pad_inputs


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
    cfg, D, info = run.cfg, run.D, run.cfg.info_weight > 0
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
