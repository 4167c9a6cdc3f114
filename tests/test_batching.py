"""Length-sorted micro-batches within random batches: little padding, every token weighed alike,
batches a pure function of (seed, step) with the random composition; whole batches where they must be."""

import pytest
import torch
import torch.nn.functional as F

from baselines.gpt2 import GPT, GPTConfig
from datasets import LMData, build_tokenizer, load_corpus
from datasets import messages
from datasets.batching import MICRO_SHARE, micro_batches
from datasets.corpora import Corpus
from datasets.tokenizers import IGNORE_INDEX
from experiments.core import runtime
from experiments.core.session import Guard, mle_step


@pytest.fixture(scope="module")
def msgs():
    train, test = messages.generate(3000, 0), messages.generate(300, 0, split="test")
    corpus = Corpus("messages", "word", "sequence", train[:2800], train[2800:], test, lowercase=True)
    return LMData(corpus, build_tokenizer(corpus))


def old_random_rows(N, step, batch_size, seed):
    """The scheme every trainer used before length grouping, written out again."""
    idx, start = [], step * batch_size
    while len(idx) < batch_size:
        epoch, pos = divmod(start + len(idx), N)
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx.extend(perm[pos:pos + batch_size - len(idx)].tolist())
    return idx


def test_length_sorted_micro_batches_pad_little_within_random_batches(msgs):
    B = 32
    settings = msgs.step_settings(B)
    assert settings["micro_tokens"] == round(B * msgs.n_tokens("train") / len(msgs.splits["train"]) / MICRO_SHARE)
    assert msgs.padding_share(B, 1) < 1.15 < 2.0 < msgs.padding_share(B, 1, "random")
    lengths = msgs.splits["train"].lengths[msgs.batch_rows(0, B, 1)]
    groups = micro_batches(lengths, settings["micro_tokens"])
    assert sorted(torch.cat(groups).tolist()) == list(range(B))  # every row once
    assert all(len(g) == 1 or len(g) * int(lengths[g].max()) <= settings["micro_tokens"] for g in groups)
    widths = [int(lengths[g].max()) for g in groups]
    assert widths == sorted(widths)


def test_batches_keep_their_random_composition_and_are_a_pure_function_of_seed_and_step(msgs):
    N = len(msgs.splits["train"])
    other = LMData(msgs.corpus, msgs.tokenizer, batching="random")
    for step in (500, 3, 87, 86, 3):  # any order, a fresh object: the same rows (exact resume, DDP ranks)
        assert msgs.batch_rows(step, 32, 5).tolist() == old_random_rows(N, step, 32, 5)  # 87 spans two epochs
        assert torch.equal(msgs.train_batch(step, 32, 5)[1], other.train_batch(step, 32, 5)[1])
    assert not torch.equal(msgs.batch_rows(3, 32, 5), msgs.batch_rows(3, 32, 6))
    assert other.step_settings(32) == {"normalizer": None, "micro_tokens": None}


def test_data_that_pads_little_is_computed_whole(monkeypatch):
    from datasets import oracle
    monkeypatch.setattr(oracle, "SIZES", {"train": 40, "val": 5, "test": 5})
    c = load_corpus("oracle")
    data = LMData(c, build_tokenizer(c))
    assert data.padding_share(8, 0) == 1.0 and data.micro_tokens(8) is None
    assert data.step_settings(8)["normalizer"] == 8 * 20  # the batch's own token count, every step
    assert "each step computed whole (they pad at most 1.15 whole)" in data.batching_summary(8, 0)
    numbers = load_corpus("numbers")
    assert LMData(numbers, build_tokenizer(numbers)).micro_tokens(64) is None  # random batches pad 1.11


def test_every_token_weighs_the_same_however_the_step_is_split(msgs):
    """mle_step with length-sorted micro-batches and the fixed normaliser: the gradient is that of
    (the batch's summed token NLL) / normaliser, computed as one block."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=msgs.tokenizer.vocab_size, block_size=msgs.block_size, n_layer=1, n_head=2,
                          n_embd=16, dropout=0.0))
    settings = msgs.step_settings(32)
    assert settings["normalizer"] == pytest.approx(32 * msgs.n_tokens("train") / len(msgs.splits["train"]))
    for step in (0, 7):
        x, y = msgs.train_batch(step, 32, 1)
        optimizer = runtime.make_optimizer(model, 0.0, 0.0, (0.9, 0.99), torch.device("cpu"))
        mle_step(model, optimizer, x, y, Guard(), 0, grad_clip=0.0, **settings)
        got = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        logits, _ = model(x)
        loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE_INDEX, reduction="sum")
        (loss / settings["normalizer"]).backward()
        for g, p in zip(got, model.parameters()):
            assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-7)


def test_eval_batches_score_every_example_once_shortest_first(msgs):
    split = msgs.splits["val"]
    rows = [y for _, y in msgs.eval_batches("val", 64)]
    widths = [y.size(1) for y in rows]
    assert widths == sorted(widths) and sum(int((y != IGNORE_INDEX).sum()) for y in rows) == msgs.n_tokens("val")
    assert sum(y.size(0) for y in rows) == len(split)


def test_padding_share_at_most_1_15_on_coco(data_dir):
    c = load_corpus("coco", data_dir=data_dir)
    data = LMData(c, build_tokenizer(c))
    for B in (32, 64):
        assert data.padding_share(B, 1337) <= 1.15 and data.padding_share(B, 1337, "random") > 1.6


@pytest.mark.parametrize("model, grouped", [("gpt2", True), ("mlp", False), ("wavenet", False)])
def test_models_with_batch_statistics_train_on_random_batches(tmp_path, capsys, model, grouped):
    """BatchNorm normalises by the batch: batches of lines of one length would skew its statistics
    against the running ones of evaluation, so those models get random batches, and say why."""
    from experiments import train_lm
    train_lm.main(["--dataset", "numbers", "--model", model, "--max_steps", "2", "--eval_interval", "2",
                   "--num_samples", "2", "--eval_samples", "0", "--progress", "false", "--batch_size", "16",
                   "--out_dir", str(tmp_path), "--run_name", model])
    out = capsys.readouterr().out
    if grouped:  # numbers pads little: whole steps, but the fixed normaliser
        assert "random batches of 16, each step computed whole (they pad at most 1.15 whole)" in out
    else:
        assert f"random batches of 16, each step computed whole ({model} normalises by batch statistics)" in out
