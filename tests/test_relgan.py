"""The RelGAN-style baseline (gan/relgan.py, gan/cnn_discriminator.py on soft one-hots,
experiments/trainers/relgan.py) on tiny CPU configs: the beta schedules, Gumbel-softmax sampling
under both sequence protocols, the gradient path from D's score into G, the soft path meeting the
hard one as beta grows, the RSGAN losses, and the trainer end to end (TensorBoard, checkpoints,
exact resume, the command, the comparison's family, sample and score)."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from baselines.rnn import LSTMConfig, RecurrentLM
from datasets import load_corpus
from datasets import oracle as oracle_mod
from datasets.tokenizers import EOS_ID, IGNORE_INDEX, PAD_ID, SPECIAL_IDS
from experiments import sample, score, train_relgan
from experiments.studies import comparison
from experiments.core.checkpoint import load_checkpoint
from experiments.generators.families import FAMILIES
from experiments.generators.generation import load_model
from experiments.trainers import recurrent_gan
from experiments.trainers import relgan as trainer
from gan import relgan, seqgan
from gan.cnn_discriminator import CNNDiscriminator, CNNDiscriminatorConfig
from gan.losses import d_loss_rsgan, g_loss_rsgan
from recurrent_gan_checks import curve, same_run

REPO = Path(__file__).resolve().parent.parent
V, T = 16, 6  # vocabulary (4 specials + 12 symbols) and sequence length of the unit tests
TINY = ["--dataset", "numbers", "--generator.n_embd", "8", "--n_embd2", "8", "--discriminator.n_embd", "8",
        "--filter_sizes", "1,2,3", "--num_filters", "4,4,4", "--batch_size", "8", "--d_steps", "2",
        "--eval_interval", "3", "--adv_eval_interval", "2", "--eval_batch_size", "1024", "--eval_samples", "8",
        "--final_samples", "8", "--num_samples", "2", "--log_interval", "1", "--progress", "false"]
COMMON = ["--pretrain_steps", "4", "--adv_steps", "6", "--g_lr", "1e-2", "--d_lr", "1e-2"]  # rates that move weights


pytestmark = pytest.mark.usefixtures("one_thread")


def lstm(seed=0):
    torch.manual_seed(seed)
    return RecurrentLM(LSTMConfig(vocab_size=V, block_size=T, n_embd=8, n_embd2=8, init_std=0.1))


def cnn(seed=0):
    torch.manual_seed(seed)
    return CNNDiscriminator(CNNDiscriminatorConfig(vocab_size=V, n_embd=8, filter_sizes="1,2,3", num_filters="4,4,4"))


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- the parts


def test_beta_schedules_on_hand_values():
    b, N = 100.0, 50
    assert relgan.beta_at(0, N, b, "exp") == 1.0 and relgan.beta_at(N, N, b, "exp") == pytest.approx(b)
    assert relgan.beta_at(N // 2, N, b, "exp") == pytest.approx(10.0)  # 100 ** (1/2)
    assert relgan.beta_at(2 * N, N, b, "exp") == pytest.approx(b)  # past the end: beta_max
    assert relgan.beta_at(7, N, b, "no") == b
    # RelGAN's lin, sqrt, quad and log reach beta_max at the last step, N - 1
    assert relgan.beta_at(0, N, b, "lin") == 1.0 and relgan.beta_at(N - 1, N, b, "lin") == pytest.approx(b)
    assert relgan.beta_at(7, N, b, "lin") == pytest.approx(1 + 7 / 49 * 99)
    assert relgan.beta_at(N - 1, N, b, "sqrt") == pytest.approx(b) and relgan.beta_at(4, N, b, "sqrt") == \
        pytest.approx(1 + 99 * 2 / 7)
    assert relgan.beta_at(7, N, b, "quad") == pytest.approx(1 + 99 * 49 / 49 ** 2)
    assert relgan.beta_at(0, N, b, "log") == 1.0 and relgan.beta_at(N - 1, N, b, "log") == pytest.approx(b)
    assert relgan.beta_at(N // 2, N, b, "sigmoid") == pytest.approx(1 + 99 / 2)
    with pytest.raises(ValueError, match="unknown beta schedule"):
        relgan.beta_at(0, N, b, "cosine")
    with pytest.raises(ValueError, match="beta_max >= 1"):
        relgan.beta_at(0, N, 0.5, "exp")


def test_gumbel_max_draws_follow_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]]).expand(40_000, -1)
    soft, hard = relgan.gumbel_softmax(logits, beta=1.0, generator=gen(0))
    freq = torch.bincount(hard, minlength=5).float() / len(hard)
    torch.testing.assert_close(freq, F.softmax(logits[0], -1), atol=0.01, rtol=0)  # exact samples of softmax
    assert freq[4] == 0 and (soft[:, 4] == 0).all()  # a -inf logit is never drawn and weighs nothing
    assert torch.equal(soft.argmax(-1), hard)


@pytest.mark.parametrize("fixed_length", [T, 0])
def test_relaxed_samples_are_soft_one_hots_whose_argmax_is_the_token(fixed_length):
    G = lstm()
    soft, targets = relgan.relaxed_sample(G, 256, T, fixed_length, 3.0, gen(1))
    assert soft.shape == (256, T, V) and targets.shape == (256, T)
    torch.testing.assert_close(soft.sum(-1), torch.ones(256, T))  # every row a distribution
    valid = targets != IGNORE_INDEX
    assert torch.equal(soft.argmax(-1)[valid], targets[valid])  # the hard token is the soft row's argmax
    if fixed_length:  # exactly T tokens, never a special one, which weighs exactly 0
        assert valid.all() and not torch.isin(targets, torch.tensor(SPECIAL_IDS)).any()
        assert (soft[..., list(SPECIAL_IDS)] == 0).all()
    else:  # up to and including <eos>, then one-hot <pad> rows and IGNORE_INDEX targets
        assert (targets == EOS_ID).any()  # an untrained model does end some sequences
        for row, s in zip(targets.tolist(), soft):
            n = row.index(EOS_ID) + 1 if EOS_ID in row else T
            assert all(t >= 0 for t in row[:n]) and all(t == IGNORE_INDEX for t in row[n:])
            assert (s[n:] == F.one_hot(torch.tensor(PAD_ID), V).float()).all()
        assert torch.equal(seqgan.as_ids(targets), soft.argmax(-1))  # what D reads of the fake, as ids
    again, same = relgan.relaxed_sample(G, 256, T, fixed_length, 3.0, gen(1))
    assert torch.equal(same, targets) and torch.equal(again, soft)  # reproducible from the generator alone


def test_the_gradient_reaches_every_generator_parameter_through_D():
    G, D = lstm(), cnn()
    soft, _ = relgan.relaxed_sample(G, 32, T, T, 5.0, gen(2))
    real = torch.randint(4, V, (32, T), generator=gen(3))
    D.requires_grad_(False)
    g_loss_rsgan(D.logit(real), D.logit(soft)).backward()
    for name, p in G.named_parameters():  # the soft rows' logits, and through the state every earlier step
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in D.parameters())
    with torch.no_grad():  # the D steps' fakes: no graph
        assert not relgan.relaxed_sample(G, 4, T, T, 5.0, gen(2))[0].requires_grad


def test_D_reads_one_hot_rows_as_ids_and_soft_rows_tend_to_them_as_beta_grows():
    G, D = lstm(), cnn().eval()
    ids = torch.randint(0, V, (64, T), generator=gen(4))
    one_hot = F.one_hot(ids, V).float()
    assert torch.equal(D.embed(one_hot), D.embed(ids))  # row @ W picks the token's row, exactly
    torch.testing.assert_close(D(one_hot), D(ids), rtol=0, atol=1e-6)
    torch.testing.assert_close(D(one_hot[:, :2]), D(ids[:, :2]), rtol=0, atol=1e-6)  # padded to the widest filter
    # the integer path is SeqGAN's forward, unchanged
    emb = D.wte(ids).transpose(1, 2)
    h = D.highway(torch.cat([F.relu(c(emb)).amax(2) for c in D.convs], 1))
    assert torch.equal(D(ids), D.head(h)) and torch.equal(D.logit(ids), D(ids)[:, 1] - D(ids)[:, 0])
    gaps = []
    for beta in (1.0, 1e4):
        soft, targets = relgan.relaxed_sample(G, 64, T, T, beta, gen(5))
        gaps.append((D.logit(soft) - D.logit(targets)).abs().max().item())
    assert gaps[1] < 1e-4 < gaps[0], gaps  # beta -> inf: the soft path is the hard one


def test_rsgan_losses_by_hand():
    real, fake = torch.tensor([1.0, -0.5]), torch.tensor([0.0, 2.0])
    # D: -log sigmoid(r - f), G: -log sigmoid(f - r), averaged over the pairs
    d = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(2.5))) / 2
    g = (math.log(1 + math.exp(1.0)) + math.log(1 + math.exp(-2.5))) / 2
    assert d_loss_rsgan(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert g_loss_rsgan(real, fake).item() == pytest.approx(g, rel=1e-6)


# ---------------------------------------------------------------------------------------------- the trainer


def run(root, *extra, name="r"):
    return train_relgan.main(TINY + ["--out_dir", str(root), "--run_name", name, *extra])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One tiny uninterrupted run: 4 MLE steps, 6 adversarial steps of 1 G step + 2 D steps."""
    root = tmp_path_factory.mktemp("relgan")
    torch.set_num_threads(1)
    return root / "straight", run(root, *COMMON, name="straight")


def test_end_to_end_writes_metrics_checkpoints_and_tensorboard(straight):
    run_dir, results = straight
    for f in ("pretrained.pt", "last.pt", "config.json", "metrics.json", "samples.txt"):
        assert (run_dir / f).is_file(), f
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["steps"], metrics["pretrain_steps"], metrics["adv_steps"]) == (10, 4, 6)
    assert "d_pretrain_rounds" not in metrics and metrics["beta"] == pytest.approx(100 ** (5 / 6))
    assert {"final/val_nll", "pretrained/test_nll", "final/bleu4", "final/self_bleu4", "adv_nll_rise"} <= set(metrics)
    assert metrics["final/test_nll"] == results["final/test_nll"]
    assert len((run_dir / "samples.txt").read_text().splitlines()) == 8
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = {"train/loss", "val/nll", "eval/bleu4", "eval/self_bleu4", "eval/beta", "gan/d_loss", "gan/g_loss",
            "gan/d_real", "gan/d_fake", "gan/grad_norm_d", "gan/grad_norm_g", "gan/beta", "hparam/test_nll"}
    assert want <= tags, want - tags
    assert [s for s, _ in curve(run_dir, "val/nll")] == [3, 4, 6, 8, 10]  # pretraining, then every 2 steps
    assert [round(v, 3) for _, v in curve(run_dir, "gan/beta")] == [round(100 ** (n / 6), 3) for n in range(6)]
    assert [s for s, _ in curve(run_dir, "eval/beta")] == [6, 8, 10]
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["model_name"] == "relgan" and ckpt["generator"] == "lstm" and ckpt["phase"] == "adversarial"
    assert {"model", "discriminator", "optimizer_mle", "optimizer_g", "optimizer_d", "rng", "tokenizer",
            "train_config", "model_config", "discriminator_config", "timing"} <= set(ckpt)
    assert ckpt["fixed_length"] == 0  # numbers: sequences end with <eos>
    pre = load_checkpoint(run_dir / "pretrained.pt")
    assert any(not torch.equal(pre["model"][k], ckpt["model"][k]) for k in pre["model"])  # adversarial steps moved G
    emb = pre["discriminator"]["wte.weight"]  # D before the adversarial phase: RelGAN's embedding init
    assert emb.abs().max() <= 2 / math.sqrt(emb.size(0)) and 0.7 < emb.std() * math.sqrt(emb.size(0)) < 1.0


def test_family_sample_and_score_accept_the_checkpoint(straight, tmp_path):
    run_dir, results = straight
    family = FAMILIES["relgan"]
    assert family.is_trained(run_dir) and not family.sweeps_psi
    corpus = load_corpus("numbers")
    sampler = family.load(run_dir, corpus, torch.device("cpu"))
    texts = sampler.sample(10, seed=3)
    assert len(texts) == 10 and texts == sampler.sample(10, seed=3)
    assert sampler.nll("test")["nll"] == pytest.approx(results["final/test_nll"], rel=1e-6)
    assert sampler.info["steps"] == 10 and "6 adversarial steps" in sampler.info["scored"]
    model, _ = load_model(run_dir / "last.pt", "cpu")
    assert sum(p.numel() for p in model.parameters()) == results["params"]
    assert len(sample.main(["--ckpt", str(run_dir / "last.pt"), "--num_samples", "3"])) == 3
    (tmp_path / "s.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "refs.txt").write_text("\n".join(corpus.test) + "\n")
    scores = score.main(["--samples", str(tmp_path / "s.txt"), "--references", str(tmp_path / "refs.txt"),
                         "--ckpt", str(run_dir / "last.pt")])
    assert scores["nll"] == pytest.approx(results["final/test_nll"], rel=1e-5)  # the same model, the same lines


def test_a_comparison_trains_relgan_through_its_family(tmp_path):
    cfg, _, entries, _ = comparison.parse_args(["--models", "lstm,relgan", "--max_steps", "5"])
    name, family, settings = entries[1]
    assert (name, family) == ("relgan", "relgan")
    argv = comparison.trainer_argv(cfg, tmp_path, name, settings) + TINY[2:] + ["--pretrain_steps", "3",
                                                                                 "--beta_steps", "5000"]
    requested = FAMILIES["relgan"].config(argv)
    assert set(requested) == {"train", "generator", "discriminator"} and requested["train"].max_steps == 5
    run_dir = FAMILIES["relgan"].train(argv)  # 3 MLE steps, then 2 adversarial (of 1000: max_steps 5 cuts them)
    assert run_dir == tmp_path / "relgan" and FAMILIES["relgan"].is_trained(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["steps"], metrics["pretrain_steps"], metrics["adv_steps"]) == (5, 3, 2)
    assert metrics["beta"] == pytest.approx(100 ** (1 / 5000))  # RelGAN's N = 5000: the schedule's start only


def test_a_fixed_length_corpus_gets_exactly_n_tokens(tmp_path, monkeypatch):
    """TextDuel's generated `oracle` (offline, SeqGAN's protocol, fixed_length 20), 200 / 50 / 50 of its
    sequences (drawing its 14,000 takes most of a minute): 20 tokens, never a special one."""
    monkeypatch.setattr(oracle_mod, "SIZES", {"train": 200, "val": 50, "test": 50})
    results = run(tmp_path, "--dataset", "oracle", "--pretrain_steps", "2", "--adv_steps", "1", "--d_steps", "1",
                  "--eval_interval", "2")
    assert results["fixed_length"] == 20 and results["final/nll_oracle"] > 0 and results["final/oracle_invalid"] == 0
    for line in (tmp_path / "r" / "samples.txt").read_text().splitlines():
        assert len(line.split()) == 20 and all(0 <= int(t) < 5000 for t in line.split())
    assert [s for s, _ in curve(tmp_path / "r", "eval/nll_oracle")] == [2, 3]


@pytest.mark.parametrize("where", ["mle_step", "discriminator_step"])
def test_killed_and_resumed_run_ends_bit_identical(straight, monkeypatch, where):
    """The process dies at the 4th MLE step (last.pt from step 3), or inside the 2nd adversarial
    step, after its generator step (last.pt from adversarial step 0); the resumed run ends exactly
    where the uninterrupted one does."""
    straight_dir, results = straight
    module = recurrent_gan if where == "mle_step" else trainer  # where the trainer looks the step up
    real = getattr(module, where)
    calls = {"n": 0}
    dies_at = 4  # the 4th MLE step; the 4th D step is the 2nd adversarial step's 2nd

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == dies_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, where, dies)
    root = straight_dir.parent / f"killed-{where}"
    with pytest.raises(KeyboardInterrupt):
        run(root, *COMMON, name="split")
    monkeypatch.setattr(module, where, real)
    ckpt = load_checkpoint(root / "split" / "last.pt")
    assert (ckpt["phase"], ckpt["pretrain_step"], ckpt["adv_step"]) == \
        (("pretrain", 3, 0) if where == "mle_step" else ("adversarial", 4, 0))
    resumed = run(root, *COMMON, "--resume", "true", name="split")
    assert resumed["steps"] == 10 and resumed["final/test_nll"] == results["final/test_nll"]
    same_run(straight_dir, root / "split")


def test_resume_after_a_budget_stop_is_exact(straight):
    straight_dir, _ = straight
    root = straight_dir.parent / "budget"
    run(root, *COMMON, "--max_steps", "7", name="split")  # stops 3 steps into the adversarial phase
    assert load_checkpoint(root / "split" / "last.pt")["adv_step"] == 3
    assert run(root, *COMMON, "--resume", "true", name="split")["steps"] == 10
    same_run(straight_dir, root / "split", curves=False)  # the stopped run also evaluated at its last step


def test_a_rate_changed_on_resume_takes_effect(tmp_path):
    run(tmp_path, "--pretrain_steps", "2", "--adv_steps", "1", "--d_steps", "1")
    run(tmp_path, "--pretrain_steps", "2", "--adv_steps", "2", "--d_steps", "1", "--g_lr", "0.5", "--d_lr", "0.25",
        "--resume", "true")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")  # (Adam's load_state_dict would keep 1e-4)
    assert ckpt["optimizer_g"]["param_groups"][0]["lr"] == 0.5 and ckpt["optimizer_d"]["param_groups"][0]["lr"] == 0.25


def test_divergence_guard_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match="intact"):
        run(tmp_path, "--pretrain_steps", "2", "--adv_steps", "20", "--g_lr", "1e30", "--grad_clip", "0")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


# ---------------------------------------------------------------------------------------------- settings

CONFIGS = sorted((REPO / "experiments" / "configs" / "relgan").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_relgan_config_loads(path):
    cfg, gen_cfg, disc_cfg = train_relgan.parse_args(["--config", str(path)])
    assert cfg.dataset and gen_cfg.n_embd == gen_cfg.n_embd2 == 32 and gen_cfg.init_std == 0.1
    assert [k for k, _ in disc_cfg.filters] == [2, 3, 4, 5] and disc_cfg.l2_reg == 0


def test_settings_are_checked():
    cfg, gen_cfg, disc_cfg = train_relgan.parse_args([])
    assert (cfg.pretrain_lr, cfg.g_lr, cfg.d_lr, cfg.d_steps, cfg.beta_max, cfg.beta_schedule, cfg.grad_clip) == \
        (1e-2, 1e-4, 1e-4, 5, 100.0, "exp", 5.0)  # RelGAN's
    assert disc_cfg.filters == [(2, 300), (3, 300), (4, 300), (5, 300)]
    with pytest.raises(ValueError, match="beta_schedule"):
        train_relgan.parse_args(["--beta_schedule", "cosine"])
    with pytest.raises(ValueError, match="beta_max"):
        train_relgan.parse_args(["--beta_max", "0.5"])
    with pytest.raises(ValueError, match="beta_steps"):
        train_relgan.parse_args(["--beta_steps", "-1"])
    assert train_relgan.parse_args(["--block_size", "9"])[1].block_size == 9  # the data's message advises it


def test_no_mle_phase_goes_straight_to_the_adversarial_one(tmp_path):
    """pretrain_steps 0: no pretrained.pt, the adversarial steps from the initial generator, and
    the data's block_size taken from --block_size, as the data's message for long lines advises."""
    results = run(tmp_path, "--pretrain_steps", "0", "--adv_steps", "2", "--d_steps", "1", "--block_size", "30")
    assert (results["steps"], results["pretrain_steps"], results["adv_steps"]) == (2, 0, 2)
    assert not (tmp_path / "r" / "pretrained.pt").exists() and "pretrained/test_nll" not in results
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["phase"] == "adversarial" and ckpt["model_config"]["block_size"] == 30
    assert results["adv_nll_rise"] is not None  # the yardstick was taken where the phase began
