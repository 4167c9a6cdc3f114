"""Length-grouped batches: little padding, every token weighed alike, a pure function of
(seed, step) that changes composition every epoch; the random scheme kept as it was."""

import pytest
import torch
import torch.nn.functional as F

from baselines.gpt2 import GPT, GPTConfig
from datasets import LMData, build_tokenizer, load_corpus
from datasets import messages
from datasets.batching import padding_share
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


def test_length_grouped_batches_pad_little_and_cover_each_epoch_once(msgs):
    B, per_epoch = 32, len(msgs.splits["train"]) // 32
    assert msgs.grouped(B) and msgs.padding_share(B, 1) < 1.15 < msgs.padding_share(B, 1, "random")
    epoch0 = [msgs.batch_rows(s, B, 1) for s in range(per_epoch)]
    seen = torch.cat(epoch0)
    assert len(seen) == len(set(seen.tolist())) == per_epoch * B  # each line at most once, drop-last only
    epoch1 = [msgs.batch_rows(s, B, 1) for s in range(per_epoch, 2 * per_epoch)]
    same = {frozenset(b.tolist()) for b in epoch0} & {frozenset(b.tolist()) for b in epoch1}
    assert len(same) < per_epoch // 10  # batch composition changes between epochs
    assert padding_share(msgs.splits["train"].lengths, epoch1) < 1.15


def test_batches_are_a_pure_function_of_seed_and_step(msgs):
    other = LMData(msgs.corpus, msgs.tokenizer)
    for step in (500, 3, 87, 3):  # any order, a fresh object: the same rows (exact resume, DDP ranks)
        assert torch.equal(msgs.train_batch(step, 32, 5)[0], other.train_batch(step, 32, 5)[0])
    assert not torch.equal(msgs.batch_rows(3, 32, 5), msgs.batch_rows(3, 32, 6))


def test_random_batching_is_the_earlier_scheme(msgs):
    N = len(msgs.splits["train"])
    rnd = LMData(msgs.corpus, msgs.tokenizer, batching="random")
    for step in (0, 1, 86, 87, 400):  # 87 spans two epochs
        assert rnd.batch_rows(step, 32, 3).tolist() == old_random_rows(N, step, 32, 3)
        assert msgs.batch_rows(step, 32, 3, batching="random").tolist() == old_random_rows(N, step, 32, 3)
    assert rnd.loss_normalizer(32) is None and not rnd.grouped(32)


def test_fixed_length_and_tiny_splits_keep_random_batches(monkeypatch):
    from datasets import oracle
    monkeypatch.setattr(oracle, "SIZES", {"train": 40, "val": 5, "test": 5})
    c = load_corpus("oracle")
    data = LMData(c, build_tokenizer(c))
    assert data.batching == "random" and data.padding_share(8, 0) == 1.0
    assert data.batch_rows(7, 8, 0).tolist() == old_random_rows(40, 7, 8, 0)
    small = Corpus("tiny", "word", "sequence", ["a b", "a", "b a b"], ["a"], ["b"])
    tiny = LMData(small, build_tokenizer(small))
    assert not tiny.grouped(8) and tiny.loss_normalizer(8) is None and "under one batch" in tiny.batching_summary(8, 0)


def test_every_token_weighs_the_same_whatever_its_batch(msgs):
    """mle_step with the fixed normaliser: the gradient is that of (summed token NLL) / normaliser,
    so a token in a batch of short lines counts exactly as one in a batch of long lines."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=msgs.tokenizer.vocab_size, block_size=msgs.block_size, n_layer=1, n_head=2,
                          n_embd=16, dropout=0.0))
    norm = msgs.loss_normalizer(32)
    assert norm == pytest.approx(32 * msgs.n_tokens("train") / len(msgs.splits["train"]))
    lengths = msgs.splits["train"].lengths
    by_width = sorted(range(80), key=lambda s: int(lengths[msgs.batch_rows(s, 32, 1)].max()))
    for step in (by_width[0], by_width[-1]):  # the shortest and the longest batch
        x, y = msgs.train_batch(step, 32, 1)
        optimizer = runtime.make_optimizer(model, 0.0, 0.0, (0.9, 0.99), torch.device("cpu"))
        mle_step(model, optimizer, x, y, Guard(), 0, grad_clip=0.0, normalizer=norm)
        got = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        logits, _ = model(x)
        (F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE_INDEX, reduction="sum") / norm).backward()
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
