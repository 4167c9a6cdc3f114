"""The GAN training and sampling commands end to end, on tiny settings (CPU, seconds)."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from datasets.tokenizers import BOS_ID
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datasets import LMData, build_tokenizer, load_corpus
from experiments import compare, sample_gan, train_gan
from experiments.generators import families, generation
from experiments.studies import comparison
from experiments.core import runtime
import gan as ganlib
from experiments.core.checkpoint import CheckpointError, load_checkpoint
from gan import LOSSES, Generator, GeneratorConfig

TINY = ["--dataset", "numbers", "--generator.n_layer", "1", "--generator.n_out_layers", "1",
        "--generator.n_head", "2", "--generator.n_embd", "16", "--noise_dim", "4", "--n_style_tokens", "2",
        "--z_dim", "8", "--w_dim", "8", "--n_mlp", "2",
        "--discriminator.n_layer", "1", "--discriminator.n_head", "2", "--discriminator.n_embd", "16",
        "--batch_size", "8", "--pretrain_lr", "3e-3", "--warmup_steps", "2", "--g_lr", "1e-3", "--d_lr", "1e-3",
        "--log_interval", "2", "--eval_interval", "4", "--eval_batch_size", "1024", "--eval_samples", "16",
        "--final_samples", "16", "--num_samples", "4", "--progress", "false", "--ema_decay", "0.5"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run(tmp_path, *extra, name="r"):
    return train_gan.main(TINY + ["--out_dir", str(tmp_path), "--run_name", name, *extra])


def test_end_to_end_tensorboard_checkpoints_and_metrics(tmp_path):
    results = run(tmp_path, "--pretrain_steps", "8", "--adv_steps", "8", "--loss", "wgan-gp", "--r1_gamma", "1")
    run_dir = tmp_path / "r"
    for f in ("pretrained.pt", "last.pt", "config.json", "metrics.json", "samples.txt"):
        assert (run_dir / f).is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 16
    assert results["pretrained/val_nll"] < math.log(33)  # MLE pretraining learned something
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    gan_tags = {"gan/d_loss", "gan/g_loss", "gan/d_real", "gan/d_fake", "gan/grad_norm_d", "gan/grad_norm_g", "gan/beta"}
    lm_tags = {"train/loss", "val/nll", "eval/unique_share", "eval/bleu4", "eval/self_bleu4", "eval/precision",
               "eval/novelty", "hparam/test_nll"}
    assert gan_tags | lm_tags <= scalars, (gan_tags | lm_tags) - scalars
    assert [e.step for e in acc.Scalars("val/nll")] == [4, 8, 12, 16]
    assert [e.step for e in acc.Scalars("gan/d_loss")] == [10, 12, 14, 16]  # the adversarial phase follows pretraining
    betas = [e.value for e in acc.Scalars("gan/beta")]
    assert betas == sorted(betas) and betas[0] > 1.0  # exp schedule towards beta_max
    assert "samples/text_summary" in acc.Tags()["tensors"]

    ckpt = load_checkpoint(run_dir / "last.pt")
    assert {"model", "ema", "discriminator", "optimizer_mle", "optimizer_g", "optimizer_d", "step",
            "adv_step", "timing", "rng", "tokenizer", "train_config", "model_config", "discriminator_config"} <= set(ckpt)
    assert ckpt["model_name"] == "gan" and ckpt["phase"] == "adversarial" and ckpt["adv_step"] == 8
    assert "mapping.w_avg" in ckpt["model"] and not {"w_avg", "beta", "beta_steps"} & set(ckpt)  # one copy, no unread fields
    # the checkpoint alone rebuilds the generator: same weights, same samples
    gen, tok, _ = generation.load_generator(run_dir / "last.pt", torch.device("cpu"), which="model")
    ref = Generator(GeneratorConfig(**ckpt["model_config"]))
    ref.load_state_dict(ckpt["model"])
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), ref.state_dict().values()))


def test_resume_is_exact(tmp_path):
    common = ["--pretrain_steps", "6", "--adv_steps", "8", "--beta_steps", "8", "--n_critic", "2"]
    run(tmp_path, *common, name="straight")
    run(tmp_path, *common, "--max_steps", "10", name="split")  # stops 4 steps into the adversarial phase
    assert load_checkpoint(tmp_path / "split" / "last.pt")["adv_step"] == 4
    run(tmp_path, *common, "--resume", "true", name="split")
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["step"] == b["step"] == 14
    for key in ("model", "ema", "discriminator"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"


@pytest.mark.parametrize("latent", ["prior", "posterior"])
def test_resume_mid_pretraining_is_exact(tmp_path, monkeypatch, latent):
    common = ["--pretrain_steps", "8", "--adv_steps", "2", "--pretrain_latent", latent]
    if latent == "posterior":  # the encoder, its optimiser state and word dropout's RNG draws must survive too
        common += ["--free_bits", "1", "--word_dropout", "0.2"]
    run(tmp_path, *common, name="straight")
    lr_at = runtime.lr_at

    def killed_at_step_6(step, *args):  # the process dies during step 6; last.pt is from step 4
        if step == 6:
            raise KeyboardInterrupt
        return lr_at(step, *args)

    monkeypatch.setattr(runtime, "lr_at", killed_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, *common, name="split")
    monkeypatch.setattr(runtime, "lr_at", lr_at)
    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    assert ckpt["phase"] == "pretrain" and ckpt["pretrain_step"] == 4
    results = run(tmp_path, *common, "--resume", "true", name="split")
    assert results["pretrain_steps"] == 8 and results["adv_steps"] == 2
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "ema", "discriminator") + (("encoder",) if latent == "posterior" else ()):
        assert all(torch.equal(a[key][n], b[key][n]) for n in a[key]), key
    # the killed process had logged step 6 after its last checkpoint: TensorBoard shows the
    # resumed run's curve only, the same as the uninterrupted one
    curves = []
    for name in ("straight", "split"):
        acc = EventAccumulator(str(tmp_path / name))
        acc.Reload()
        curves.append([(e.step, e.value) for e in acc.Scalars("train/loss")])
    assert [s for s, _ in curves[1]] == [2, 4, 6, 8] and curves[0] == curves[1]


def test_resume_into_another_discriminator_is_refused(tmp_path):
    run(tmp_path, "--pretrain_steps", "2", "--adv_steps", "2")
    with pytest.raises(CheckpointError, match="discriminator"):
        run(tmp_path, "--pretrain_steps", "2", "--adv_steps", "4", "--resume", "true", "--discriminator.n_embd", "32")


def test_divergence_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    d_loss, g_loss = LOSSES["rsgan"]
    calls = {"n": 0}

    def exploding(real, fake):  # finite for 5 discriminator steps, then NaN
        calls["n"] += 1
        return d_loss(real, fake) * (math.nan if calls["n"] > 5 else 1.0)

    monkeypatch.setitem(ganlib.LOSSES, "rsgan", (exploding, g_loss))
    with pytest.raises(FloatingPointError, match=r"non-finite discriminator loss .* at step 9.*last\.pt.* intact"):
        run(tmp_path, "--pretrain_steps", "4", "--adv_steps", "20", "--eval_interval", "4")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")  # written at step 8, before the NaN at step 9
    assert ckpt["step"] == 8
    assert all(torch.isfinite(t).all() for key in ("model", "ema", "discriminator") for t in ckpt[key].values()
               if t.is_floating_point())
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_divergence_guard_on_a_huge_learning_rate(tmp_path):
    # no monkeypatching: the weights blow up for real and the run stops with the same message
    # (a non-finite loss, or non-finite weights caught before they overwrite last.pt)
    with pytest.raises(FloatingPointError, match="intact"):
        run(tmp_path, "--pretrain_steps", "2", "--adv_steps", "60", "--g_lr", "1e30", "--d_lr", "1e30",
            "--grad_clip", "0", "--loss", "wgan-gp", "--eval_interval", "2")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")  # written when the adversarial phase began
    assert ckpt["step"] == 2
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    with pytest.raises(FloatingPointError, match="No checkpoint had been written yet"):
        run(tmp_path, "--pretrain_steps", "0", "--adv_steps", "60", "--g_lr", "1e30", "--d_lr", "1e30",
            "--grad_clip", "0", "--loss", "wgan-gp", "--eval_interval", "100", name="fresh")


def test_ema_differs_from_g_and_is_what_gets_sampled(tmp_path, capsys):
    run(tmp_path, "--pretrain_steps", "4", "--adv_steps", "6")
    path = tmp_path / "r" / "last.pt"
    ckpt = load_checkpoint(path)
    assert any(not torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["model"] if "weight" in k)
    ema, tok, _ = generation.load_generator(path, torch.device("cpu"), which="ema")
    g, _, _ = generation.load_generator(path, torch.device("cpu"), which="model")
    from_ema = generation.gan_texts(ema, tok, 64, ema.block_size, seed=3)
    # the same z, noise and first token give other logits: the two generators differ
    rng = torch.Generator().manual_seed(3)
    z = torch.randn(64, ema.config.mapping.z_dim, generator=rng)
    noise = ema.make_noise(64, 1, generator=rng)
    bos = torch.full((64, 1), BOS_ID)
    with torch.no_grad():
        a, _ = ema(bos, z=z, noise=noise)
        b, _ = g(bos, z=z, noise=noise)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-4
    capsys.readouterr()
    assert sample_gan.main(["--ckpt", str(path), "--num_samples", "64", "--seed", "3"]) == from_ema
    # the comparison's family samples the EMA generator too, and truncation psi = 0 collapses every z
    corpus = load_corpus("numbers")
    family = families.FAMILIES["gan"]
    assert family.sweeps_psi and family.is_trained(tmp_path / "r")
    sampler = family.load(tmp_path / "r", corpus, torch.device("cpu"))
    assert sampler.sample(64, seed=3) == from_ema
    assert sampler.sample(8, psi=0.5, seed=1) == sampler.sample(8, psi=0.5, seed=1)
    nll = sampler.nll("test")
    assert 0 < nll["nll"] < math.log(33) + 1 and nll["nll_with_pad"] < nll["nll"]
    assert {"params", "steps", "train_seconds"} <= set(sampler.info)


def test_config_sections_and_errors():
    cfg, gen_cfg, disc_cfg = train_gan.parse_args(["--generator.n_embd", "32", "--discriminator.n_embd", "48",
                                                   "--z_dim", "16", "--loss", "hinge"])
    assert gen_cfg.n_embd == 32 and disc_cfg.n_embd == 48 and gen_cfg.mapping.z_dim == 16 and cfg.loss == "hinge"
    with pytest.raises(ValueError, match="several sections"):
        train_gan.parse_args(["--n_embd", "32"])
    with pytest.raises(ValueError, match="unknown loss"):
        train_gan.parse_args(["--loss", "lsgan"])


REPO = Path(__file__).resolve().parent.parent
GAN_CONFIGS = sorted((REPO / "experiments" / "configs" / "gan").glob("*.toml"))


@pytest.mark.parametrize("path", GAN_CONFIGS, ids=[p.name for p in GAN_CONFIGS])
def test_every_shipped_gan_config_loads(path):
    cfg, gen_cfg, disc_cfg = train_gan.parse_args(["--config", str(path)])
    assert cfg.dataset and gen_cfg.n_embd > 0 and disc_cfg.n_embd > 0


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "configs" / "compare").glob("*.toml")))
def test_gan_entries_of_the_comparisons_resolve(path):
    cfg, _, entries, _ = compare.parse_args(["--config", str(path)])
    for name, family, settings in entries:
        if family == "gan":  # every setting is one train_gan knows, and the shared budget applies
            train_cfg, _, _ = train_gan.parse_args(comparison.trainer_argv(cfg, Path("runs/x"), name, settings))
            assert train_cfg.max_steps == cfg.max_steps


def test_two_ranks_under_torchrun(tmp_path):
    # gloo on CPU: gradients are averaged by hand over the ranks (the sampler's many small
    # forwards rule out DDP's hooks); rank 0 alone writes checkpoints and metrics
    import os
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "experiments.train_gan", *TINY,
           "--pretrain_steps", "4", "--adv_steps", "4", "--device", "cpu", "--out_dir", str(tmp_path), "--run_name", "r"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["steps"] == 8
    assert load_checkpoint(tmp_path / "r" / "last.pt")["adv_step"] == 4


def test_init_from_another_runs_pretrained_generator(tmp_path):
    source = run(tmp_path, "--pretrain_steps", "6", "--adv_steps", "2", name="source")
    results = run(tmp_path, "--pretrain_steps", "0", "--adv_steps", "4", "--g_lr", "1e-2",
                  "--init_from", str(tmp_path / "source" / "pretrained.pt"), name="adv")
    # the adversarial phase started from the source's pretrained generator, scored alike
    assert results["pretrain_steps"] == 0 and results["adv_steps"] == 4
    assert results["pretrained/test_nll"] == source["pretrained/test_nll"]
    a = load_checkpoint(tmp_path / "source" / "pretrained.pt")["model"]
    b = load_checkpoint(tmp_path / "adv" / "pretrained.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("w_avg"))
    with pytest.raises(ValueError, match="init_from replaces"):
        train_gan.parse_args(["--init_from", "x.pt"])


def test_gan_report_reads_the_recorded_run(tmp_path):
    from experiments import gan_report
    run(tmp_path, "--pretrain_steps", "4", "--adv_steps", "4")
    out = tmp_path / "report"
    gan_report.main(["--runs", str(tmp_path / "r"), "--tags", "val/nll,gan/d_loss,eval/precision", "--name", "x",
                     "--out_dir", str(out), "--temperatures", "0.9,1.0", "--psis", "0.5", "--num_samples", "8",
                     "--seeds", "0,1"])
    text = (out / "x.md").read_text()
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert f"{metrics['ema/test_nll']:.3f}" in text and "after MLE pretraining" in text
    assert (out / "x.png").stat().st_size > 0 and (out / "x_temperature.png").stat().st_size > 0
    sweep = json.loads((out / "x_sweep.json").read_text())["r"]
    assert [p["temperature"] for p in sweep["ema"]] == [0.9, 1.0] and len(sweep["ema"][0]["precision_seeds"]) == 2
    assert [(p["temperature"], p["psi"]) for p in sweep["ema_psi"]] == [(1.0, 0.5)]
    assert "| r | ema_psi | 1 | 0.5 |" in text and "I(z; x_t | x_<t)" in text


def test_vae_pretraining_trains_the_encoder_and_scores_with_it(tmp_path):
    """pretrain_latent = posterior: z ~ q(z | x), KL with free bits, word dropout; the encoder
    travels in the checkpoints, is restored on resume, and is the proposal of every NLL."""
    from experiments.scoring.nll import posterior_nll
    from gan import DiscriminatorConfig, PosteriorEncoder
    args = ["--pretrain_steps", "8", "--adv_steps", "4", "--pretrain_latent", "posterior", "--free_bits", "2",
            "--word_dropout", "0.3", "--nll_samples", "2"]
    results = run(tmp_path, *args)
    run_dir = tmp_path / "r"
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    assert {"train/kl", "train/rec", "eval/latent_mi", "val/vae_objective"} <= set(acc.Tags()["scalars"])
    ckpt = load_checkpoint(run_dir / "last.pt")
    enc = PosteriorEncoder(DiscriminatorConfig(**ckpt["discriminator_config"]), 8)
    enc.load_state_dict(ckpt["encoder"])
    assert enc.to_posterior.weight.abs().sum() > 0  # trained away from its zero init
    # the final NLL is the prior's estimate, as for every GAN; beside it the IWAE bound with that encoder
    gen, _, _ = generation.load_generator(run_dir / "last.pt", torch.device("cpu"), which="ema")
    corpus = load_corpus("numbers", level="word")
    data = LMData(corpus, build_tokenizer(corpus), block_size=gen.block_size)
    direct = posterior_nll(gen, enc, data.eval_batches("test", 1024), 2, torch.device("cpu"), seed=1337)
    assert direct["nll"] == pytest.approx(results["ema/test_nll_posterior"], rel=1e-6)
    assert "val/nll_posterior" in acc.Tags()["scalars"] and math.isfinite(results["ema/test_nll"])
    # a prior-pretrained checkpoint cannot seed a posterior run: the encoder would be missing
    run(tmp_path, "--pretrain_steps", "4", "--adv_steps", "0", name="prior")
    with pytest.raises(CheckpointError, match="no posterior encoder"):
        run(tmp_path, "--pretrain_steps", "0", "--adv_steps", "2", "--pretrain_latent", "posterior",
            "--init_from", str(tmp_path / "prior" / "pretrained.pt"), name="bad")
    with pytest.raises(ValueError, match="needs pretrain_latent"):
        run(tmp_path, "--free_bits", "1", name="bad2")


def test_ckpt_interval_saves_between_evaluations_in_both_phases(tmp_path, monkeypatch):
    # the run session's cadence, shared with the LM trainer: last.pt every ckpt_interval steps of a
    # phase without evaluating, so a killed run loses at most that many steps
    lr_at = runtime.lr_at

    def killed_at_step_7(step, *args):
        if step == 7:
            raise KeyboardInterrupt
        return lr_at(step, *args)

    monkeypatch.setattr(runtime, "lr_at", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--pretrain_steps", "10", "--adv_steps", "4", "--eval_interval", "100", "--ckpt_interval", "3")
    monkeypatch.setattr(runtime, "lr_at", lr_at)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["phase"] == "pretrain" and ckpt["pretrain_step"] == 6
    results = run(tmp_path, "--pretrain_steps", "10", "--adv_steps", "4", "--eval_interval", "100",
                  "--ckpt_interval", "3", "--resume", "true")
    assert results["steps"] == 14 and results["ms_per_pretrain_step"] > 0 and results["ms_per_adv_step"] > 0


@pytest.mark.parametrize("loss", ["rsgan", "wgan-gp"])
def test_the_discriminator_reads_real_and_fake_batches_at_their_own_width(tmp_path, loss):
    """adv_width own: a real batch is as wide as its longest line, the fakes as their batch's longest
    (sampling stops when every row has ended); block: both at block_size. WGAN-GP
    interpolates the two, so it brings them to one width."""
    import functools
    from gan import RELAXATIONS
    from experiments.trainers import gan_phases as phases
    from experiments.trainers.gan_run import GANRun
    import random
    rng = random.Random(0)
    lines = [" ".join(rng.choice("a b c d e f".split()) for _ in range(rng.randint(2, 12))) for _ in range(120)]
    (tmp_path / "c.txt").write_text("\n".join(lines + ["a " * 29 + "b"]) + "\n")  # one line of 30 words: T = 31
    cfg, gen_cfg, disc_cfg = train_gan.parse_args(TINY + ["--dataset", str(tmp_path / "c.txt"), "--out_dir",
                                                          str(tmp_path), "--loss", loss, "--pretrain_steps", "0",
                                                          "--adv_steps", "2"])
    run_ = GANRun(cfg, gen_cfg, disc_cfg, runtime.Distributed("cpu"))
    real, mask = phases.real_batch(run_, 0)
    lengths = mask.sum(1)
    assert real.size(1) == int(lengths.max()) < run_.T and bool(mask[:, -1].any())
    relax = functools.partial(RELAXATIONS[cfg.relax], beta=1.0)
    fake = phases.draw_fakes(run_, 8, phases.new_z(run_), relax)
    assert fake["soft"].size(1) == fake["ids"].size(1) == int(fake["mask"].sum(1).max())
    phases.critic_steps(run_, phases.new_z(run_), {k: v.detach() for k, v in fake.items()}, relax)  # one width for GP
    run_.session.lock.release()
    block = dataclasses.replace(cfg, adv_width="block", run_name="b")
    run_b = GANRun(block, gen_cfg, disc_cfg, runtime.Distributed("cpu"))
    assert phases.real_batch(run_b, 0)[0].size(1) == run_b.T
    assert phases.draw_fakes(run_b, 8, phases.new_z(run_b), relax)["soft"].size(1) == run_b.T
    run_b.session.lock.release()
