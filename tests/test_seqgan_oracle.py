"""SeqGAN's real oracle (`seqgan_oracle`) and the fixed-length protocol of both oracle corpora.

- the recurrence of datasets.oracle.SeqGANOracle against an independent step-by-step numpy
  implementation of SeqGAN's target_lstm.py (float64);
- the oracle's own 10,000 samples (its training split) score SeqGAN's published 5.750;
- file resolution: a corrupt copy and a missing one are CorpusErrors naming seqgan_oracle.npz;
- the fixed-length protocol (Corpus.fixed_length = 20): LMData has exactly 20 targets per row
  and no <eos> target; every registered LM and the GAN generator sample exactly 20 tokens,
  never a special token; NLL-oracle accepts those samples as fully valid and counts samples
  of any other length as invalid.

Tests that need seqgan_oracle.npz read it from $TEXTDUEL_DATA_DIR (as the other real corpora)
and skip with a message when it is absent (under CI=true they fail).
"""

import shutil

import numpy as np
import pytest
import torch

from baselines import MODELS
from baselines.sampling import generate
from datasets import Corpus, CorpusError, LMData, build_tokenizer, load_corpus
from datasets import oracle as oracle_mod
from datasets.corpora import FILES, sha256_of
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, SPECIAL_IDS
from experiments.generators.generation import gan_texts, lm_texts
from experiments.scoring.metrics import oracle_nll
from experiments.scoring.samples import SampleEvaluator
from gan import Generator, GeneratorConfig, MappingConfig, gumbel_softmax

T = oracle_mod.SEQ_LEN  # 20


@pytest.fixture(scope="module")
def npz_path(real_file):
    return real_file("seqgan_oracle.npz")


@pytest.fixture(scope="module")
def seqgan(npz_path):
    return oracle_mod.SeqGANOracle.from_npz(npz_path)


@pytest.fixture
def small_sizes(monkeypatch):
    """The oracle corpora with 60 / 10 / 10 sequences: their wiring, without sampling 14,000."""
    monkeypatch.setattr(oracle_mod, "SIZES", {"train": 60, "val": 10, "test": 10})


# ---------------------------------------------------------------- the oracle itself

def numpy_step_by_step(arrays, seq):
    """Per-token NLL (nats) of one sequence under SeqGAN's target LSTM, written from
    target_lstm.py in float64 with numpy: h0 = c0 = 0, the first input the embedding of start
    token 0, then each token in turn; four separate gate products, as SeqGAN has them."""
    a = {k: v.astype(np.float64) for k, v in arrays.items()}
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    h, c, prev, out = np.zeros(32), np.zeros(32), 0, []
    for tok in seq:
        x = a["embedding"][prev]
        i = sig(x @ a["Wi"] + h @ a["Ui"] + a["bi"])
        f = sig(x @ a["Wf"] + h @ a["Uf"] + a["bf"])
        o = sig(x @ a["Wog"] + h @ a["Uog"] + a["bog"])
        c_tilde = np.tanh(x @ a["Wc"] + h @ a["Uc"] + a["bc"])
        c = f * c + i * c_tilde
        h = o * np.tanh(c)
        logits = h @ a["Wo"] + a["bo"]
        m = logits.max()
        out.append(m + np.log(np.exp(logits - m).sum()) - logits[tok])
        prev = tok
    return np.array(out)


def test_recurrence_matches_a_step_by_step_numpy_lstm(npz_path, seqgan):
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    seqs = seqgan.sample(4, seed=3)  # typical sequences, where the oracle is peaked
    noise = torch.randint(oracle_mod.VOCAB, (2, T), generator=torch.Generator().manual_seed(0))
    seqs = torch.cat([seqs, noise])
    want = np.stack([numpy_step_by_step(arrays, s) for s in seqs.tolist()])  # (6, T)
    # the teacher-forced pass (what nll uses)
    logp = torch.log_softmax(seqgan._logits(seqs).double(), dim=-1)
    got = -logp.gather(-1, seqs[..., None])[..., 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    for s, w in zip(seqs, want):
        assert seqgan.nll(s[None]) == pytest.approx(w.mean(), rel=1e-5)
    # the incremental pass (what sample uses) gives the same logits
    state, steps = None, []
    inputs = torch.cat([torch.zeros(len(seqs), 1, dtype=torch.long), seqs[:, :-1]], dim=1)
    for t in range(T):
        logits, state = seqgan._step(inputs[:, t:t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), seqgan._logits(seqs), rtol=1e-5, atol=1e-4)


def test_samples_are_reproducible_from_their_seed(seqgan):
    a, b = seqgan.sample(50, seed=5), seqgan.sample(50, seed=5)
    assert torch.equal(a, b) and a.shape == (50, T)
    assert a.min() >= 0 and a.max() < oracle_mod.VOCAB
    assert not torch.equal(a, seqgan.sample(50, seed=6))


def test_own_training_samples_score_the_published_5750(seqgan):
    # the 10,000 sequences of the corpus's training split (seed SEQGAN_SEED x 1000): SeqGAN
    # publishes 5.750 for its oracle's own samples (5.7485 measured on 10,000 with these arrays;
    # one draw of 10,000 varies by about 0.005)
    train = seqgan.sample(oracle_mod.SIZES["train"], seed=oracle_mod.SEQGAN_SEED * 1000)
    assert train.shape == (10_000, T)
    assert seqgan.nll(train) == pytest.approx(5.750, abs=0.02)


def test_the_registered_corpus(npz_path, small_sizes):
    c = load_corpus("seqgan_oracle", data_dir=str(npz_path.parent))
    assert c.fixed_length == T and c.level == "word" and c.mode == "sequence"
    assert c.fixed_vocab == [str(i) for i in range(oracle_mod.VOCAB)]
    assert isinstance(c.extras["oracle"], oracle_mod.SeqGANOracle)
    assert (len(c.train), len(c.val), len(c.test)) == (60, 10, 10)
    assert all(len(line.split()) == T for s in ("train", "val", "test") for line in getattr(c, s))
    assert c.train[:10] != c.val and c.val != c.test  # drawn separately, each from its own seed
    again = load_corpus("seqgan_oracle", data_dir=str(npz_path.parent))
    assert (again.train, again.val, again.test) == (c.train, c.val, c.test)


# ---------------------------------------------------------------- finding the file

def test_a_corrupt_copy_is_refused_naming_the_file(npz_path, tmp_path):
    bad = tmp_path / "seqgan_oracle.npz"
    shutil.copyfile(npz_path, bad)
    with open(bad, "r+b") as f:  # one byte changed
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    assert sha256_of(bad) != FILES["seqgan_oracle"].sha256
    with pytest.raises(CorpusError, match=r"seqgan_oracle\.npz has sha256 .* expected 45e58e24"):
        load_corpus("seqgan_oracle", data_dir=str(tmp_path))


def test_a_missing_file_names_it_and_where_to_place_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TEXTDUEL_DATA_DIR", raising=False)
    with pytest.raises(CorpusError, match=r"seqgan_oracle\.npz not found.*place it in the data directory") as e:
        load_corpus("seqgan_oracle", data_dir=str(tmp_path))
    assert str(tmp_path) in str(e.value) and "target_params_py3.pkl" in str(e.value)  # where from, too


# ---------------------------------------------------------------- the fixed-length protocol

def test_lm_data_has_exactly_20_targets_and_no_eos(small_sizes):
    # the `oracle` corpus (TextDuel's own oracle; no file needed) under SeqGAN's protocol. Before
    # fixed_length its NLL-test also scored a 21st target, <eos>, which SeqGAN's sequences do not
    # have (and block_size was 21); now x = <bos> t1..t19, y = t1..t20
    c = load_corpus("oracle")
    assert c.fixed_length == T
    data = LMData(c, build_tokenizer(c))
    assert data.block_size == T and data.fixed_length == T
    assert data.n_tokens("test") == T * len(c.test)
    for x, y in [data.train_batch(0, 8, seed=1), *data.eval_batches("test", 4)]:
        assert x.shape[1] == y.shape[1] == T
        assert (y != IGNORE_INDEX).sum(1).tolist() == [T] * len(y)
        assert not (y == EOS_ID).any() and (x[:, 0] == BOS_ID).all()
        assert torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(CorpusError, match="block_size >= 20"):
        LMData(c, build_tokenizer(c), block_size=T - 1)
    c.val = c.val[:3] + [c.val[3] + " 7"]  # a 21-token example
    with pytest.raises(CorpusError, match="val example 4 of oracle has 21 tokens"):
        LMData(c, build_tokenizer(c))


def fixed_corpus(oracle=None, n=40, seed=0):
    """A fixed-length corpus over a small vocabulary "0".."11" (16 ids with the specials): a sampler
    that did not ban the specials would draw one within 20 steps in nearly every row."""
    g = torch.Generator().manual_seed(seed)
    lines = [" ".join(map(str, row)) for row in torch.randint(12, (n, T), generator=g).tolist()]
    return Corpus("fixed", "word", "sequence", lines[:20], lines[20:30], lines[30:], fixed_length=T,
                  fixed_vocab=[str(i) for i in range(12)], extras={"oracle": oracle} if oracle is not None else {})


from test_baselines import TINY  # noqa: E402  (the tiny sizes of every registered model, one table)


def check_fixed(texts, tok):
    for text in texts:
        ids = tok.encode(text)
        assert len(ids) == T and not set(ids) & set(SPECIAL_IDS), text


@pytest.mark.parametrize("name", list(MODELS))
def test_every_lm_samples_exactly_20_tokens_and_no_special(name):
    c = fixed_corpus()
    tok = build_tokenizer(c)
    data = LMData(c, tok)
    model_cls, config_cls = MODELS[name]
    torch.manual_seed(0)
    model = model_cls(config_cls(vocab_size=tok.vocab_size, block_size=data.block_size, **TINY[name]))
    if getattr(model, "closed_form", False):
        model.fit([data.train_batch(0, 20, seed=0)])
    else:
        with torch.no_grad():  # away from uniform, towards no symbol in particular
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    model.eval()
    texts = lm_texts(model, tok, 64, data.block_size, seed=1, batch_size=24, fixed_length=data.fixed_length)
    check_fixed(texts, tok)
    assert texts == lm_texts(model, tok, 64, data.block_size, seed=1, batch_size=24, fixed_length=T)  # seeded
    # the sampler itself: every row T tokens past <bos>, none special, never stopped early
    out = generate(model, torch.full((16, 1), BOS_ID), T, eos_id=None, banned=SPECIAL_IDS,
                   generator=torch.Generator().manual_seed(2))
    assert out.shape == (16, T + 1) and not torch.isin(out[:, 1:], torch.tensor(SPECIAL_IDS)).any()
    # without the protocol the same model ends (or pads, or writes <unk>) within 20 tokens:
    # the check above is not vacuous
    free = lm_texts(model, tok, 64, data.block_size, seed=1, batch_size=24)
    assert any(len(tok.encode(t)) != T or "<unk>" in t for t in free)


def tiny_generator(V, block):
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(vocab_size=V, block_size=block, n_layer=2, n_out_layers=1, n_head=2, n_embd=16,
                                    noise_dim=4, n_style_tokens=3, mapping=MappingConfig(z_dim=8, w_dim=12, n_mlp=3)))
    with torch.no_grad():
        gen.lm_head.weight.normal_(0.0, 0.5)  # (tied with the embedding) a non-uniform start
    return gen.eval()


def test_the_gan_generator_samples_exactly_20_tokens_and_no_special():
    c = fixed_corpus()
    tok = build_tokenizer(c)
    data = LMData(c, tok)
    gen = tiny_generator(tok.vocab_size, data.block_size)
    texts = gan_texts(gen, tok, 64, gen.block_size, seed=1, batch_size=24, fixed_length=data.fixed_length)
    check_fixed(texts, tok)
    assert texts == gan_texts(gen, tok, 64, gen.block_size, seed=1, batch_size=24, fixed_length=T)
    free = gan_texts(gen, tok, 64, gen.block_size, seed=1, batch_size=24)
    assert any(len(tok.encode(t)) != T or "<unk>" in t for t in free)
    # the relaxed sample of the adversarial phase: all T positions valid, no mass on a special,
    # gradients finite (the banned logits are -inf)
    out = gen.sample(8, T, relax=lambda logits, generator=None: gumbel_softmax(logits, beta=2.0, generator=generator),
                     banned=SPECIAL_IDS, generator=torch.Generator().manual_seed(3))
    assert out["mask"].all() and not torch.isin(out["ids"], torch.tensor(SPECIAL_IDS)).any()
    assert out["soft"][..., list(SPECIAL_IDS)].abs().max() == 0
    out["soft"][..., 5].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in gen.parameters() if p.grad is not None)


def test_samples_are_fully_valid_for_nll_oracle(seqgan):
    c = fixed_corpus(oracle=seqgan)
    tok = build_tokenizer(c)
    data = LMData(c, tok)
    model_cls, config_cls = MODELS["gpt2"]
    torch.manual_seed(0)
    model = model_cls(config_cls(vocab_size=tok.vocab_size, block_size=data.block_size, **TINY["gpt2"])).eval()
    lm = lm_texts(model, tok, 40, data.block_size, seed=0, fixed_length=data.fixed_length)
    gan = gan_texts(tiny_generator(tok.vocab_size, T), tok, 40, T, seed=0, fixed_length=data.fixed_length)
    ev = SampleEvaluator(c, tok, references="test")
    for texts in (lm, gan):
        m = ev.score(texts)
        assert m["oracle_invalid"] == 0 and np.isfinite(m["nll_oracle"])
        direct = oracle_nll([t.split() for t in texts], seqgan, seq_len=T, vocab_size=oracle_mod.VOCAB, exact=True)
        assert direct["scored"] == len(texts) and direct["nll"] == pytest.approx(m["nll_oracle"])


def test_nll_oracle_counts_other_lengths_as_invalid_under_the_protocol(seqgan):
    # samples from elsewhere (another project's file) may still be 19 or 21 tokens long: under
    # the fixed-length protocol they are invalid, not scored on what they have
    full = [str(i) for i in seqgan.sample(1, seed=0)[0].tolist()]
    samples = [full, full[:19], full + ["7"], full[:0], ["<unk>"] + full[1:]]
    exact = oracle_nll(samples, seqgan, seq_len=T, vocab_size=oracle_mod.VOCAB, exact=True)
    assert exact["scored"] == 1 and exact["invalid"] == pytest.approx(4 / 5)
    assert exact["nll"] == pytest.approx(seqgan.nll(torch.tensor([[int(t) for t in full]])), rel=1e-6)
    loose = oracle_nll(samples, seqgan, seq_len=T, vocab_size=oracle_mod.VOCAB)  # any other corpus: other lengths scored on what they have
    assert loose["scored"] == 3
    c = fixed_corpus(oracle=seqgan)
    m = SampleEvaluator(c, build_tokenizer(c), references="test").score([" ".join(s) for s in samples])
    assert m["oracle_invalid"] == pytest.approx(4 / 5)


def test_sample_commands_keep_the_protocol_of_the_checkpoints_corpus(tmp_path, small_sizes, capsys):
    # the checkpoint carries fixed_length, so `sample` and `sample_gan` need no corpus to draw
    # exactly 20 oracle tokens and never a special one
    from experiments import sample, sample_gan, train_gan, train_lm
    common = ["--dataset", "oracle", "--out_dir", str(tmp_path), "--progress", "false", "--batch_size", "8",
              "--eval_interval", "2", "--eval_batch_size", "16", "--num_samples", "2"]
    train_lm.main(common + ["--run_name", "lm", "--model", "gpt2", "--n_layer", "1", "--n_head", "2",
                            "--n_embd", "16", "--max_steps", "2", "--eval_samples", "0"])
    train_gan.main(common + ["--run_name", "gan", "--pretrain_steps", "2", "--adv_steps", "2",
                             "--generator.n_layer", "1", "--generator.n_out_layers", "1", "--generator.n_head", "2",
                             "--generator.n_embd", "16", "--discriminator.n_layer", "1", "--discriminator.n_head", "2",
                             "--discriminator.n_embd", "16", "--eval_samples", "4", "--final_samples", "4"])
    from experiments.core.checkpoint import load_checkpoint
    assert load_checkpoint(tmp_path / "lm" / "best.pt")["fixed_length"] == T
    assert load_checkpoint(tmp_path / "gan" / "last.pt")["fixed_length"] == T
    capsys.readouterr()
    texts = (sample.main(["--ckpt", str(tmp_path / "lm" / "best.pt"), "--num_samples", "16"])
             + sample_gan.main(["--ckpt", str(tmp_path / "gan" / "last.pt"), "--num_samples", "16"]))
    assert all(len(t.split()) == T and all(w.isdigit() for w in t.split()) for t in texts), texts[:3]
