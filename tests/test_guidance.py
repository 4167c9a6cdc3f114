"""experiments/generators/guidance.py: the post-hoc discriminator (encoding, calibration by hand, training
on a generator it can and one it cannot tell from real text) and the guided sampler on a
generator that writes garbage half of the time."""

import random

import pytest
import torch

from datasets import LMData, build_tokenizer, load_corpus
from datasets.tokenizers import EOS_ID, PAD_ID
from experiments.core.checkpoint import CheckpointError
from experiments.generators.guidance import GuideConfig, GuidedSampler, calibration, encode_texts, train_guide

TINY = dict(n_layer=1, n_head=2, n_embd=32, samples=800, max_epochs=6, lr=1e-3)


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


def test_the_discriminator_tells_garbage_apart_and_not_real_text(numbers):
    """Against all-garbage samples D is near perfect on held-out texts; against real text drawn
    from the same split it stays near chance (it cannot learn a difference that is not there)."""
    torch.manual_seed(0)
    _, easy = train_guide(ListSampler(numbers, numbers.train, garbage=1.0), numbers.train, GuideConfig(**TINY), "cpu")
    assert easy["val_accuracy"] > 0.95 and easy["val_loss"] < 0.2
    _, none = train_guide(ListSampler(numbers, numbers.train, garbage=0.0), numbers.train, GuideConfig(**TINY), "cpu")
    assert 0.35 < none["val_accuracy"] < 0.65 and none["val_loss"] > 0.6
    assert {"val_ece", "val_brier", "best_epoch", "epochs", "train_texts", "val_texts"} <= set(easy)
    assert easy["train_texts"] + easy["val_texts"] == 2 * TINY["samples"]


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


def test_a_gan_guides_with_its_own_discriminator_as_is_or_fine_tuned(numbers, tmp_path):
    """The GAN's D loads from its checkpoint; as is (max_epochs 0) it is only measured; fine-tuned,
    validation loss never ends above the as-is figure (epoch 0 is a candidate); an LM checkpoint
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
    small = dict(samples=200, max_epochs=0, lr=1e-3)
    _, as_is = train_guide(sampler, numbers.train, GuideConfig(**small), "cpu", init=own)
    assert as_is["epochs"] == 0 and as_is["initialised_from"] == "given"
    D, tuned = train_guide(sampler, numbers.train, GuideConfig(**{**small, "max_epochs": 2}), "cpu", init=own)
    assert tuned["val_loss"] <= as_is["val_loss"] and D is not own
    assert GuidedSampler(sampler, D, "sir", 1.0, m=2).sample(5, seed=1) == GuidedSampler(sampler, D, "sir", 1.0,
                                                                                        m=2).sample(5, seed=1)
    torch.save({"model_name": "gpt2", "model": {}}, tmp_path / "lm.pt")
    with pytest.raises(CheckpointError, match="only a GAN run"):
        gan_discriminator(tmp_path / "lm.pt", "cpu")
