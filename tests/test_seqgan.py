"""SeqGAN (gan/cnn_discriminator.py, gan/seqgan.py, experiments/trainers/seqgan.py) on tiny CPU
configs: the discriminator at initialisation, sampling under both sequence protocols, rollout
rewards, the policy-gradient loss, the rollout network's update, and the trainer end to end
(TensorBoard, checkpoints, exact resume, the comparison's family)."""

import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from baselines.rnn import LSTMConfig, RecurrentLM
from datasets import load_corpus
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, SPECIAL_IDS
from experiments import compare, train_seqgan
from experiments.studies import comparison
from experiments.core.checkpoint import load_checkpoint
from experiments.generators.families import FAMILIES
from experiments.generators.generation import load_model
from experiments.trainers import recurrent_gan
from experiments.trainers import seqgan as trainer
from gan import seqgan
from gan.cnn_discriminator import CNNDiscriminator, CNNDiscriminatorConfig, discriminator_loss
from recurrent_gan_checks import curve, same_run

REPO = Path(__file__).resolve().parent.parent
V, T = 16, 6  # vocabulary (4 specials + 12 symbols) and sequence length of the unit tests
TINY = ["--dataset", "numbers", "--generator.n_embd", "8", "--n_embd2", "8", "--discriminator.n_embd", "8",
        "--filter_sizes", "1,2,3", "--num_filters", "4,4,4", "--batch_size", "8", "--n_rollouts", "2",
        "--d_steps", "2", "--d_epochs", "1", "--d_samples", "16", "--d_batch_size", "8", "--eval_interval", "3",
        "--adv_eval_interval", "2", "--eval_batch_size", "1024", "--eval_samples", "8", "--final_samples", "8",
        "--num_samples", "2", "--log_interval", "1", "--progress", "false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def lstm(seed=0, vocab=V):
    torch.manual_seed(seed)
    return RecurrentLM(LSTMConfig(vocab_size=vocab, block_size=T, n_embd=8, n_embd2=8))


def cnn(seed=0, **kw):
    torch.manual_seed(seed)
    return CNNDiscriminator(CNNDiscriminatorConfig(**{"vocab_size": V, "n_embd": 8, "filter_sizes": "1,2,3",
                                                      "num_filters": "4,4,4", **kw}))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def with_eos(rows):
    """Targets from token lists ending in <eos> (or running to T): IGNORE_INDEX after the end."""
    out = torch.full((len(rows), T), IGNORE_INDEX)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r)
    return out


# ---------------------------------------------------------------------------------------------- the parts


def test_discriminator_cross_entropy_at_init_is_log2_and_l2_is_the_output_layers():
    D = cnn()
    ids = torch.randint(4, V, (512, T), generator=gen(0))
    labels = torch.randint(0, 2, (512,), generator=gen(1))
    scores = D(ids)
    assert scores.shape == (512, 2)
    ce = torch.nn.functional.cross_entropy(scores, labels).item()
    assert abs(ce - math.log(2)) < 0.05, ce  # no idea yet which is which
    W, b = D.head.weight, D.head.bias
    expected = ce + 0.2 * 0.5 * (W.square().sum() + b.square().sum()).item()
    assert discriminator_loss(D, scores, labels).item() == pytest.approx(expected, rel=1e-5)
    p = D.prob_real(ids)
    assert D.training and p.shape == (512,) and torch.allclose(p, D.eval()(ids).softmax(-1)[:, 1])
    assert D(ids[:, :1]).shape == (512, 2)  # shorter than the widest filter: padded with <pad>


def test_discriminator_config_is_validated():
    with pytest.raises(ValueError, match="one count per width"):
        CNNDiscriminatorConfig(filter_sizes="1,2", num_filters="4")
    with pytest.raises(ValueError, match="comma-separated integers"):
        CNNDiscriminatorConfig(filter_sizes="1,x", num_filters="4,4")
    with pytest.raises(ValueError, match="positive integers"):
        CNNDiscriminatorConfig(filter_sizes="1,0", num_filters="4,4")


def test_sampling_protocols():
    G = lstm()
    fixed = seqgan.sample(G, 256, T, T, gen(0))
    assert fixed.shape == (256, T) and (fixed >= 0).all()  # exactly T tokens
    assert not torch.isin(fixed, torch.tensor(SPECIAL_IDS)).any()  # no special token, ever
    free = seqgan.sample(G, 256, T, 0, gen(0))
    for row in free.tolist():  # up to and including <eos>, then IGNORE_INDEX; or T tokens without one
        n = row.index(EOS_ID) + 1 if EOS_ID in row else T
        assert all(t >= 0 for t in row[:n]) and all(t == IGNORE_INDEX for t in row[n:])
    assert (free == EOS_ID).any()  # an untrained model does end some sequences
    assert torch.equal(seqgan.sample(G, 256, T, 0, gen(0)), free)  # reproducible from the generator alone
    assert torch.equal(seqgan.as_ids(free), free.clamp(min=PAD_ID))


@pytest.mark.parametrize("fixed_length", [T, 0])
def test_rollout_rewards_are_mean_D_over_completions_and_D_of_the_sequence_at_the_end(fixed_length):
    G, D, N, B = lstm(), cnn(), 4, 8
    targets = seqgan.sample(G, B, T, fixed_length, gen(1))
    if not fixed_length:  # sequences of every length, one of them complete after its first token
        targets = with_eos([[5, 6, EOS_ID], [EOS_ID], [7, 8, 9, 10, 11, 12], [4, 5, 6, 7, EOS_ID]] * 2)
    rewards = seqgan.rollout_rewards(G, D, targets, N, fixed_length, gen(2))
    ids = seqgan.as_ids(targets)
    full = D.prob_real(ids)
    assert rewards.shape == (B, T)
    valid = targets != IGNORE_INDEX
    last = valid.sum(1) - 1
    assert torch.equal(rewards.gather(1, last[:, None]).squeeze(1), full)  # the last step: D(Y) exactly
    assert (rewards[~valid] == 0).all() and ((rewards[valid] > 0) & (rewards[valid] < 1)).all()
    if fixed_length:
        assert torch.equal(rewards[:, -1], full)
    # the same generator gives the same completions: Q_t is D's mean over them
    done = seqgan.rollouts(G, targets, N, fixed_length, gen(2))  # (T-1, N, B, T)
    assert done.shape == (T - 1, N, B, T)
    for t in range(1, T):  # every completion keeps its prefix
        assert torch.equal(done[t - 1, :, :, :t], ids[None, :, :t].expand(N, -1, -1))
    q = D.prob_real(done.reshape(-1, T)).view(T - 1, N, B).mean(1).t()  # (B, T-1)
    before_end = valid[:, :-1] & (torch.arange(T - 1)[None] < last[:, None])
    assert torch.allclose(rewards[:, :-1][before_end], q[before_end], atol=1e-6)
    if fixed_length:
        assert not torch.isin(done, torch.tensor(SPECIAL_IDS)).any()


def test_rollouts_continue_each_prefix_from_its_own_state():
    """With logits scaled up a millionfold sampling is greedy, so every completion must be the
    greedy continuation of its prefix, decoded here the slow way (one full pass per token)."""
    G = lstm()
    with torch.no_grad():
        G.lm_head.weight.mul_(1e6)
        G.lm_head.bias.mul_(1e6)
    targets = torch.randint(4, V, (3, T), generator=gen(0))  # not the model's own choices
    done = seqgan.rollouts(G, targets, 2, T, gen(1))
    for t in range(1, T):
        for b in range(3):
            seq = targets[b, :t].tolist()
            while len(seq) < T:
                logits = G(torch.tensor([[BOS_ID] + seq]))[0][0, -1]
                logits[list(SPECIAL_IDS)] = float("-inf")
                seq.append(int(logits.argmax()))
            assert done[t - 1, :, b].tolist() == [seq, seq], (t, b)


def test_policy_gradient_with_positive_reward_raises_the_sequences_log_probability():
    G = lstm()
    targets = with_eos([[5, 6, 7, EOS_ID]])
    x = torch.tensor([[1, 5, 6, 7]])  # <bos> y1 y2 y3
    y = targets[:, :4]
    ones = torch.ones(1, T)
    # with Q = 1 everywhere the REINFORCE loss is -log p(Y): the token NLL summed over Y's 4 tokens
    loss = seqgan.policy_gradient_loss(G, targets, ones, fixed_length=0)
    assert loss.item() == pytest.approx(4 * G(x, y)[1].item(), rel=1e-5)
    for reward, direction in ((2.0, +1), (-2.0, -1)):
        H = lstm()
        before = -H(x, y)[1].item()
        seqgan.policy_gradient_loss(H, targets, reward * ones, fixed_length=0).backward()
        with torch.no_grad():
            for p in H.parameters():
                p -= 1e-2 * p.grad
        assert direction * (-H(x, y)[1].item() - before) > 0  # log p(Y) rises with a positive reward, falls otherwise


def test_rollout_network_moves_towards_the_generator_by_update_rate():
    G, rollout = lstm(0), lstm(1)
    old = {k: v.clone() for k, v in rollout.state_dict().items()}
    seqgan.update_rollout(rollout, G, 0.8)
    for k, v in rollout.state_dict().items():
        assert torch.allclose(v, 0.8 * old[k] + 0.2 * G.state_dict()[k]), k
    seqgan.update_rollout(rollout, G, 0.0)  # the paper's Algorithm 1: beta <- theta
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in rollout.state_dict().items())


# ---------------------------------------------------------------------------------------------- the trainer


def run(tmp_path, *extra, name="r"):
    return train_seqgan.main(TINY + ["--out_dir", str(tmp_path), "--run_name", name, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny run of all three phases: 6 MLE steps, 2 D pretraining rounds, 4 adversarial rounds."""
    root = tmp_path_factory.mktemp("seqgan")
    torch.set_num_threads(1)
    results = train_seqgan.main(TINY + ["--out_dir", str(root), "--run_name", "r", "--pretrain_steps", "6",
                                        "--d_pretrain_rounds", "2", "--adv_steps", "4"])
    return root / "r", results


def test_end_to_end_writes_metrics_checkpoints_and_tensorboard(finished):
    run_dir, results = finished
    for f in ("pretrained.pt", "last.pt", "config.json", "metrics.json", "samples.txt"):
        assert (run_dir / f).is_file(), f
    metrics = json.loads((run_dir / "metrics.json").read_text())
    counts = (metrics["steps"], metrics["pretrain_steps"], metrics["d_pretrain_rounds"], metrics["adv_steps"])
    assert counts == (12, 6, 2, 4)
    assert metrics["train_seconds"] > 0 and metrics["final/test_nll"] == results["final/test_nll"]
    assert {"final/val_nll", "pretrained/test_nll", "final/bleu4", "final/precision", "adv_nll_rise"} <= set(metrics)
    assert len((run_dir / "samples.txt").read_text().splitlines()) == 8
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = {"train/loss", "grad_norm", "val/nll", "eval/bleu4", "eval/self_bleu4", "eval/unique_share",
            "eval/precision", "gan/d_loss", "gan/d_acc", "gan/grad_norm_d", "gan/g_loss", "gan/reward", "gan/d_fake",
            "gan/grad_norm_g", "hparam/test_nll"}
    assert want <= tags, want - tags
    assert [s for s, _ in curve(run_dir, "val/nll")] == [3, 6, 10, 12]  # pretraining, then every 2 rounds
    assert [s for s, _ in curve(run_dir, "gan/g_loss")] == [9, 10, 11, 12]  # after 6 MLE steps and 2 D rounds
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["model_name"] == "seqgan" and ckpt["generator"] == "lstm" and ckpt["phase"] == "adversarial"
    assert {"model", "rollout", "discriminator", "optimizer_mle", "optimizer_g", "optimizer_d", "rng", "tokenizer",
            "train_config", "model_config", "discriminator_config", "timing"} <= set(ckpt)
    assert ckpt["fixed_length"] == 0  # numbers: sequences end with <eos>
    # the rollout network is a delayed copy: neither G nor the pretrained generator
    pre = load_checkpoint(run_dir / "pretrained.pt")["model"]
    assert any(not torch.equal(ckpt["rollout"][k], ckpt["model"][k]) for k in ckpt["model"])
    assert any(not torch.equal(pre[k], ckpt["model"][k]) for k in pre)


def test_the_family_loads_and_samples_the_generator(finished):
    run_dir, results = finished
    family = FAMILIES["seqgan"]
    corpus = load_corpus("numbers")
    assert family.is_trained(run_dir) and family.vocabulary(run_dir)[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    sampler = family.load(run_dir, corpus, torch.device("cpu"))
    texts = sampler.sample(10, seed=3)
    assert len(texts) == 10 and texts == sampler.sample(10, seed=3) and all(isinstance(t, str) for t in texts)
    assert sampler.nll("test")["nll"] == pytest.approx(results["final/test_nll"], rel=1e-6)
    assert sampler.info["steps"] == 12 and sampler.info["params"] == results["params"]
    assert not family.sweeps_psi and "last.pt" in sampler.info["scored"]
    with pytest.raises(ValueError, match="psi"):
        sampler.sample(2, psi=0.7)
    requested = family.config(TINY + ["--pretrain_steps", "6", "--d_pretrain_rounds", "2", "--adv_steps", "4"])
    assert set(requested) == {"train", "generator", "discriminator"}


def test_a_fixed_length_corpus_gets_exactly_n_tokens_and_nll_oracle(tmp_path):
    """TextDuel's generated `oracle` (offline; SeqGAN's protocol, fixed_length 20): every sample of
    training, final scoring and the family's sampler is 20 oracle tokens, never a special token."""
    results = run(tmp_path, "--dataset", "oracle", "--pretrain_steps", "2", "--d_pretrain_rounds", "1",
                  "--adv_steps", "1", "--filter_sizes", "1,2,20", "--eval_interval", "2")
    assert results["fixed_length"] == 20 and 0 < results["final/nll_oracle"] and results["final/oracle_invalid"] == 0
    for line in (tmp_path / "r" / "samples.txt").read_text().splitlines():
        assert len(line.split()) == 20 and all(0 <= int(t) < 5000 for t in line.split())
    assert load_checkpoint(tmp_path / "r" / "last.pt")["fixed_length"] == 20
    model, tokenizer = load_model(tmp_path / "r" / "last.pt", "cpu")  # what the family samples with
    assert all(len(t.split()) == 20 for t in recurrent_gan.generator_texts(model, tokenizer, 5, 20, 20, seed=0))
    assert [s for s, _ in curve(tmp_path / "r", "eval/nll_oracle")] == [2, 4]  # after pretraining, after the round


def test_mle_pretraining_lowers_validation_nll(tmp_path):
    results = run(tmp_path, "--pretrain_steps", "24", "--eval_interval", "6", "--d_pretrain_rounds", "0",
                  "--adv_steps", "0", "--pretrain_lr", "0.01")
    nll = [v for _, v in curve(tmp_path / "r", "val/nll")]
    assert len(nll) == 4 and nll[-1] < nll[0] < math.log(33) + 0.2
    assert results["pretrained/val_nll"] == results["final/val_nll"] == pytest.approx(min(nll), rel=1e-6)
    last = run(tmp_path, "--pretrain_steps", "24", "--eval_interval", "6", "--d_pretrain_rounds", "0",
               "--adv_steps", "0", "--pretrain_lr", "0.01", "--pretrain_select", "last", name="last")
    assert last["final/val_nll"] == pytest.approx(nll[-1], rel=1e-6)  # SeqGAN's choice: the last generator


COMMON = ["--pretrain_steps", "4", "--d_pretrain_rounds", "4", "--adv_steps", "6"]


def test_resume_after_a_budget_stop_is_exact(tmp_path):
    run(tmp_path, *COMMON, name="straight")
    run(tmp_path, *COMMON, "--max_steps", "11", name="split")  # stops 3 rounds into the adversarial phase
    assert load_checkpoint(tmp_path / "split" / "last.pt")["adv_step"] == 3
    results = run(tmp_path, *COMMON, "--resume", "true", name="split")
    assert results["steps"] == 14
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "rollout", "discriminator"):
        assert all(torch.equal(a[key][n], b[key][n]) for n in a[key]), key


@pytest.mark.parametrize("where", ["discriminator_round", "generator_step"])
def test_killed_and_resumed_run_ends_bit_identical(tmp_path, monkeypatch, where):
    """The process dies inside D pretraining's 3rd round, or the 3rd adversarial round (last.pt is
    from the 2nd); the resumed run ends exactly where the uninterrupted one does."""
    run(tmp_path, *COMMON, name="straight")
    real = getattr(trainer, where)
    calls = {"n": 0}

    def dies_on_the_third_call(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(trainer, where, dies_on_the_third_call)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, *COMMON, name="split")
    monkeypatch.setattr(trainer, where, real)
    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    phase, rounds = ("d_pretrain", (2, 0)) if where == "discriminator_round" else ("adversarial", (4, 2))
    assert ckpt["phase"] == phase and (ckpt["d_pretrain_round"], ckpt["adv_step"]) == rounds
    results = run(tmp_path, *COMMON, "--resume", "true", name="split")
    assert results["steps"] == 14
    same_run(tmp_path / "straight", tmp_path / "split", ("model", "rollout", "discriminator"))
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert straight["final/test_nll"] == results["final/test_nll"]


def test_divergence_guard_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match="intact"):
        run(tmp_path, "--pretrain_steps", "2", "--d_pretrain_rounds", "0", "--adv_steps", "20", "--g_lr", "1e30",
            "--grad_clip", "0")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


# ---------------------------------------------------------------------------------------------- settings

CONFIGS = sorted((REPO / "experiments" / "configs" / "seqgan").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_seqgan_config_loads(path):
    cfg, gen_cfg, disc_cfg = train_seqgan.parse_args(["--config", str(path)])
    assert cfg.dataset and gen_cfg.n_embd == gen_cfg.n_embd2 == 32 and disc_cfg.filters


def test_settings_are_checked():
    cfg, gen_cfg, _ = train_seqgan.parse_args([])
    assert (gen_cfg.n_embd, gen_cfg.n_embd2, cfg.n_rollouts, cfg.update_rate, cfg.d_steps, cfg.d_epochs) == \
        (32, 32, 16, 0.8, 5, 3)  # SeqGAN's
    with pytest.raises(ValueError, match="update_rate"):
        train_seqgan.parse_args(["--update_rate", "1.5"])
    assert train_seqgan.parse_args(["--block_size", "9"])[1].block_size == 9  # the data's message advises it


def test_a_comparison_can_train_seqgan(tmp_path):
    cfg, _, entries, _ = compare.parse_args(["--models", "gpt2,seqgan", "--max_steps", "30"])
    name, family, settings = entries[1]
    assert (name, family) == ("seqgan", "seqgan")
    train_cfg, _, _ = train_seqgan.parse_args(comparison.trainer_argv(cfg, tmp_path, name, settings))
    assert train_cfg.max_steps == 30 and train_cfg.run_name == "seqgan"


def test_a_rate_changed_on_resume_takes_effect(tmp_path):
    """Adam's load_state_dict alone would keep the checkpoint's rates; the configured ones apply."""
    run(tmp_path, "--pretrain_steps", "2", "--d_pretrain_rounds", "1", "--adv_steps", "1")
    run(tmp_path, "--pretrain_steps", "2", "--d_pretrain_rounds", "1", "--adv_steps", "2", "--g_lr", "0.5",
        "--d_lr", "0.25", "--resume", "true")
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["optimizer_g"]["param_groups"][0]["lr"] == 0.5 and ckpt["optimizer_d"]["param_groups"][0]["lr"] == 0.25


def test_block_size_is_the_way_to_keep_long_lines(tmp_path):
    """The data's refusal of an overlong line names --block_size N (or --max_len); SeqGAN's trainer
    takes it (as train_lm and train_gan do; RelGAN's: test_relgan.py): every sequence then has N positions."""
    run(tmp_path, "--pretrain_steps", "2", "--d_pretrain_rounds", "0", "--adv_steps", "0", "--block_size", "30")
    assert load_checkpoint(tmp_path / "r" / "last.pt")["model_config"]["block_size"] == 30


@pytest.mark.parametrize("cap", [2, 6])
def test_a_budget_stop_inside_an_early_phase_resumes_into_it(tmp_path, cap):
    """max_steps below the MLE phase (2) or inside D pretraining (6 = 4 MLE steps + 2 rounds): the run
    stays in that phase, and a resume without the cap finishes it and ends as the uninterrupted run."""
    run(tmp_path, *COMMON, name="straight")
    run(tmp_path, *COMMON, "--max_steps", str(cap), name="split")
    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    assert (ckpt["phase"], ckpt["step"]) == ("pretrain" if cap == 2 else "d_pretrain", cap)
    assert run(tmp_path, *COMMON, "--resume", "true", name="split")["steps"] == 14
    same_run(tmp_path / "straight", tmp_path / "split", ("model", "rollout", "discriminator"), curves=False)
