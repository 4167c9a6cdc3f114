"""experiments/generators/guidance.py: the post-hoc discriminator (encoding, calibration and the AUC by
hand, training on a generator it can and one it cannot tell from real text, the causal variant
started from an LM, the density ratio of an enumerable toy) and the guided sampler on a
generator that writes garbage half of the time."""

import random

import pytest
import torch

from datasets import LMData, build_tokenizer, load_corpus
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID
from experiments.core.checkpoint import CheckpointError
from experiments.generators.guidance import (GuideConfig, GuidedSampler, Proposals, auc, auc_interval, calibration,
                                             encode_texts, train_guide)

pytestmark = pytest.mark.usefixtures("one_thread")  # discriminators trained in-process: no OpenMP spin-waits on a loaded machine

TINY = dict(n_layer=1, n_head=2, n_embd=32, samples=800, val_samples=200, lr=1e-3, warmup_steps=20, steps=600,
            eval_interval=50, patience=4)


class ListSampler:
    """A stand-in generator: real numbers names, or with probability `garbage` the same words shuffled."""

    def __init__(self, corpus, texts, garbage: float):
        self.tokenizer = build_tokenizer(corpus)
        self.data = LMData(corpus, self.tokenizer)
        self.texts, self.garbage = texts, garbage

    def sample(self, n, temperature=1.0, psi=1.0, seed=0):
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            words = rng.choice(self.texts).split()
            if rng.random() < self.garbage:
                words = rng.sample(sorted(set(" ".join(self.texts[:200]).split())), len(words))
            out.append(" ".join(words))
        return out


@pytest.fixture(scope="module")
def numbers():
    return load_corpus("numbers")


def test_encoding_round_trips_and_masks_up_to_eos(numbers):
    tok = build_tokenizer(numbers)
    texts = numbers.train[:5]
    ids, mask = encode_texts(texts, tok, 9)
    for i, t in enumerate(texts):
        n = len(t.split())
        assert tok.decode(ids[i].tolist()) == t and ids[i, n] == EOS_ID and (ids[i, n + 1:] == PAD_ID).all()
        assert mask[i].tolist() == [True] * (n + 1) + [False] * (8 - n)
    long_ids, _ = encode_texts(["one two three four"], tok, 3)  # cut to T - 1 tokens, <eos> kept
    assert long_ids[0].tolist() == tok.encode("one two") + [EOS_ID]


def test_calibration_by_hand():
    probs, labels = torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([1, 1, 0, 0])
    got = calibration(probs, labels)  # four bins of one each: (0.1 + 0.2 + 0.2 + 0.1) / 4
    assert got["ece"] == pytest.approx(0.15) and got["brier"] == pytest.approx(0.025)
    assert calibration(torch.tensor([0.5, 0.5]), torch.tensor([1, 0]))["ece"] == pytest.approx(0.0)


def test_auc_and_its_interval_by_hand():
    real, fake = torch.tensor([3.0, 2.0, 0.5]), torch.tensor([1.0, 0.5, -1.0])
    assert auc(real, fake) == pytest.approx((3 + 3 + 1.5) / 9)  # 0.5 ties 0.5: half a pair
    lo, hi = auc_interval(real, fake, resamples=2000)
    assert 0.0 <= lo < auc(real, fake) < hi <= 1.0
    assert auc_interval(real, fake, 2000, seed=1) == auc_interval(real, fake, 2000, seed=1)
    many = torch.arange(400.0)
    assert auc_interval(many + 1000, many, 200) == (1.0, 1.0)  # every real above every fake: no doubt


def test_the_discriminator_tells_garbage_apart_and_not_real_text(numbers):
    """Against all-garbage samples D is near perfect on held-out texts, its AUC interval far above
    1/2; against real text drawn from the same split it stays at chance and is marked as having no
    signal (it cannot learn a difference that is not there)."""
    torch.manual_seed(0)
    _, easy = train_guide(ListSampler(numbers, numbers.train, garbage=1.0), numbers.train, GuideConfig(**TINY), "cpu")
    assert easy["val_accuracy"] > 0.95 and easy["val_loss"] < 0.2 and easy["val_auc_lo"] > 0.95 and easy["signal"]
    _, none = train_guide(ListSampler(numbers, numbers.train, garbage=0.0), numbers.train, GuideConfig(**TINY), "cpu")
    assert 0.35 < none["val_accuracy"] < 0.65 and none["val_loss"] > 0.6
    assert none["val_auc_lo"] < 0.5 < none["val_auc_hi"] and not none["signal"]
    assert none["steps"] < TINY["steps"]  # early stopping: nothing to learn
    assert {"val_ece", "val_brier", "best_step", "steps", "curve", "pool", "val_texts"} <= set(easy)
    assert easy["pool"] == TINY["samples"] and easy["val_texts"] == 2 * TINY["val_samples"]
    assert [r["step"] for r in easy["curve"]][:2] == [0, TINY["eval_interval"]]


def test_the_discriminator_learns_the_density_ratio_of_a_toy():
    """Two known distributions over the 64 texts of 3 symbols from 4: D's logit ranks the texts as
    the true log ratio does, and SIR with it (m 8, alpha 1) closes most of the KL to the target."""
    from experiments.generators.ratio_check import ratio_check
    r = ratio_check(seed=0, samples=20000)
    assert r["spearman"] >= 0.8, r
    assert r["kl_sir"] <= 0.7 * r["kl_base"], r


def test_a_causal_discriminator_reads_up_to_eos_and_starts_from_an_lm(numbers):
    """Scored at <eos>: what follows it cannot move the score; from an LM, its trunk computes the
    LM's own hidden states, and its zero head scores every text 0 until trained."""
    from baselines.gpt2 import GPT, GPTConfig
    from gan.causal_discriminator import CausalDiscriminator
    tok, data = build_tokenizer(numbers), LMData(numbers, build_tokenizer(numbers))
    torch.manual_seed(0)
    lm = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=data.block_size, n_layer=1, n_head=2, n_embd=32)).eval()
    D = CausalDiscriminator.from_lm(lm, data.block_size + 1).eval()
    ids, mask = encode_texts(numbers.train[:4], tok, data.block_size + 1)
    assert torch.equal(D(ids, mask), torch.zeros(4))
    x = torch.cat([torch.full_like(ids[:, :1], BOS_ID), ids[:, :data.block_size - 1]], dim=1)  # as the LM reads
    assert torch.allclose(D.trunk.hidden(x), lm.hidden(x), atol=1e-6)
    torch.nn.init.normal_(D.head.weight)
    scores = D(ids, mask)
    assert torch.allclose(D(ids.masked_fill(~mask, 7), mask), scores)  # other tokens after <eos>
    ids[0, 0] = 7 if ids[0, 0] != 7 else 8
    assert not torch.allclose(D(ids, mask)[0], scores[0])  # the score has read the first token


@pytest.mark.parametrize("method,strength", [("sir", 1.0), ("drs", 0.0)])
def test_guidance_removes_most_garbage(numbers, method, strength):
    """The base writes garbage half of the time; guided by its discriminator, far less often."""
    base = ListSampler(numbers, numbers.train, garbage=0.5)
    D, _ = train_guide(base, numbers.train, GuideConfig(**TINY), "cpu")
    real = set(numbers.train)
    plain = base.sample(400, seed=5)
    guided = GuidedSampler(base, D, method, strength, m=8)
    texts = guided.sample(400, seed=5)
    garbage = lambda ts: sum(t not in real for t in ts) / len(ts)  # noqa: E731
    assert len(texts) == 400 and garbage(plain) > 0.4 and garbage(texts) < 0.15
    assert guided.stats.cost >= 1.5 and guided.sample(400, seed=5) == texts
    with pytest.raises(ValueError, match="method"):
        GuidedSampler(base, D, "topk", 1.0)


def test_proposals_drawn_once_give_the_points_fresh_draws_give(numbers):
    """The frontier's guided points share one Proposals per model: each point is what it would be
    with its own draws, and every SIR point after the first samples nothing."""
    base = ListSampler(numbers, numbers.train, garbage=0.5)
    D, _ = train_guide(base, numbers.train, GuideConfig(**TINY), "cpu")
    drawn = []
    counting = ListSampler(numbers, numbers.train, garbage=0.5)
    counting.sample = lambda n, **kw: drawn.append(n) or base.sample(n, **kw)
    proposals = Proposals(counting)
    for method, strength in [("drs", 0.0), ("sir", 1.0), ("sir", 4.0), ("drs", 2.0), ("sir", 1.0)]:
        fresh = GuidedSampler(base, D, method, strength, m=8).sample(300, seed=5)
        assert GuidedSampler(proposals, D, method, strength, m=8).sample(300, seed=5) == fresh
    assert drawn.count(300 * 8) == 1  # the three SIR points: one draw of their candidates
    assert sum(drawn) < 2 * 300 * 8
    with pytest.raises(RuntimeError, match="lower gamma"):  # a gamma past the cost cap gives up in bounded time
        GuidedSampler(base, D, "drs", 40.0, max_cost=3).sample(300, seed=5)


def test_a_gan_guides_with_its_own_discriminator_as_is_or_fine_tuned(numbers, tmp_path):
    """The GAN's D loads from its checkpoint; as is (steps 0) it is only measured; fine-tuned,
    held-out loss never ends above the as-is figure (step 0 is a candidate); an LM checkpoint
    has no D to lend."""
    from experiments import train_gan
    from experiments.generators.families import FAMILIES
    from experiments.generators.guidance import gan_discriminator
    from test_train_gan import TINY as GAN_TINY
    train_gan.main(GAN_TINY + ["--out_dir", str(tmp_path), "--run_name", "g", "--pretrain_steps", "4",
                               "--adv_steps", "2", "--final_samples", "20", "--eval_samples", "20",
                               "--info_weight", "1"])  # its D has InfoGAN's latent head too, which guidance drops
    sampler = FAMILIES["gan"].load(tmp_path / "g", numbers, "cpu")
    own = gan_discriminator(tmp_path / "g" / "last.pt", "cpu")
    small = dict(samples=200, val_samples=50, steps=0, eval_interval=10, lr=1e-3)
    _, as_is = train_guide(sampler, numbers.train, GuideConfig(**small), "cpu", init=own)
    assert as_is["steps"] == 0 and as_is["initialised_from"] == "given"
    D, tuned = train_guide(sampler, numbers.train, GuideConfig(**{**small, "steps": 20}), "cpu", init=own)
    assert tuned["val_loss"] <= as_is["val_loss"] and D is not own
    assert GuidedSampler(sampler, D, "sir", 1.0, m=2).sample(5, seed=1) == GuidedSampler(sampler, D, "sir", 1.0,
                                                                                        m=2).sample(5, seed=1)
    torch.save({"model_name": "gpt2", "model": {}}, tmp_path / "lm.pt")
    with pytest.raises(CheckpointError, match="only a GAN run"):
        gan_discriminator(tmp_path / "lm.pt", "cpu")


def test_fresh_reals_come_from_their_source_for_training_and_held_out_alike(numbers):
    """Where the corpus can draw real texts, the held-out reals are a draw of their own too (a
    generator that memorised training-split texts would make those look generated) under a seed
    no training pass uses; without fresh_reals the training split is split instead."""
    from experiments.generators.guidance import Pools
    seeds = []

    def draw_real(n, seed):
        seeds.append(seed)
        return random.Random(seed).sample(numbers.train, n)
    base = ListSampler(numbers, numbers.train, garbage=0.0)
    cfg = GuideConfig(samples=50, val_samples=20, seed=3)
    pools = Pools(base, [], cfg, base.data.block_size + 1, draw_real)
    assert seeds == [-4] and len(pools.val[2]) == 40 and pools.n == 50
    ids, _, labels = pools.draw(0)
    assert seeds == [-4, 4] and labels.sum() == 50 and len(labels) == 100
    fixed = Pools(base, numbers.train, GuideConfig(samples=50, val_samples=20, fresh_reals=False), 10, draw_real)
    assert seeds == [-4, 4] and fixed.n == 50 and not fixed.fresh_reals


@pytest.mark.parametrize("fresh_fakes", [True, False])
def test_a_fit_stopped_midway_goes_on_to_the_unstopped_result(numbers, tmp_path, monkeypatch, fresh_fakes):
    """A discriminator's training stopped in its fourth pass (a checkpoint is stored after each
    whole pass) and started again goes on from there, without training passes 0-2 again, to the
    same curve and the same weights as one never stopped; the stored curve is logged again; a
    checkpoint under another key is not read."""
    from experiments.generators.guidance import FitCheckpoint, Pools
    cfg = GuideConfig(**{**TINY, "samples": 200, "patience": 100, "steps": 60, "eval_interval": 4,
                         "fresh_fakes": fresh_fakes})  # passes of 400 texts, 7 steps each: 9 passes
    base = ListSampler(numbers, numbers.train, garbage=0.5)
    D0, whole = train_guide(base, numbers.train, cfg, "cpu", checkpoint=FitCheckpoint(tmp_path / "a.pt", {"k": 1}))

    class Stop(Exception):
        pass
    draw, passes, stop_at = Pools.draw, [], [3]

    def counted_draw(self, round_):
        passes.append(round_)
        if round_ in stop_at:
            raise Stop
        return draw(self, round_)
    monkeypatch.setattr(Pools, "draw", counted_draw)
    ck = FitCheckpoint(tmp_path / "b.pt", {"k": 1})
    with pytest.raises(Stop):
        train_guide(base, numbers.train, cfg, "cpu", checkpoint=ck)
    assert ck.path.is_file() and passes == [0, 1, 2, 3]

    class Rows:
        steps = []

        def scalars(self, values, step, prefix=""):
            self.steps.append(step)
    passes[:], stop_at[:] = [], []
    D1, resumed = train_guide(base, numbers.train, cfg, "cpu", checkpoint=ck, logger=Rows())
    assert passes == list(range(3, 9))
    assert resumed["curve"] == whole["curve"] and resumed["best_step"] == whole["best_step"]
    assert all(torch.equal(a, b) for a, b in zip(D0.state_dict().values(), D1.state_dict().values()))
    assert Rows.steps == [r["step"] for r in whole["curve"][1:]]  # the stored rows again, then the rest
    assert FitCheckpoint(ck.path, {"k": 2}).load() is None and ck.load() is not None
