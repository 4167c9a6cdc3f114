"""Parity with Hugging Face's GPT-2, offline: a random GPT2LMHeadModel built with `transformers`
(test-only dependency, requirements-test.txt; the library never imports it) over a small
byte-level BPE trained here, loaded by baselines/hf_gpt2.py: the same next-token distribution
to 1e-5, the same ids from both tokenizers, and import -> export -> import exact. Nothing is
downloaded."""

import json
import math
import random

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency "
                                   "(pip install -r requirements-test.txt)")
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel  # noqa: E402

from baselines.hf_gpt2 import EOT, HFCheckpointError, load_hf, save_hf  # noqa: E402
from datasets.bpe import N_SPECIALS, BPETokenizer  # noqa: E402
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # noqa: E402

MIXED = "The Cat's 3 DOGS'll run... café naïve Straße, привет мир, 你好 😀 family 👨‍👩‍👧 tab\there  end."


def corpus(n=300, seed=0):
    rng = random.Random(seed)
    words = ["the", "cat", "dog", "über", "naïve", "Straße", "привет", "мир", "你好", "😀", "run", "ran", "café"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + rng.choice([".", "!", ""])
            for _ in range(n)]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A GPT-2 folder as Hugging Face writes it: a random 2-layer, 64-wide GPT2LMHeadModel over a
    BPE of a few hundred symbols (TextDuel's merges, GPT-2's layout: <|endoftext|> last)."""
    folder = tmp_path_factory.mktemp("hf-gpt2")
    bpe = BPETokenizer.fit(corpus(), vocab_size=400)
    bpe._hf.model.save(str(folder))  # vocab.json + merges.txt
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab[EOT] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    transformers.GPT2TokenizerFast.from_pretrained(str(folder)).save_pretrained(folder)  # + tokenizer.json
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=64, n_layer=2, n_head=2,
                                       bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1))
    with torch.no_grad():  # GPT-2's init leaves biases and LayerNorms at 0 and 1: perturb them to test their mapping
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    return folder, model.eval(), len(vocab)


def hf_ids(V, seed=0, B=3, T=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V - 1, (B, T), generator=g)
    ids[:, 0] = V - 1  # GPT-2 starts a text with <|endoftext|>
    return ids


def ours_from_hf(ids, V):
    out = ids + N_SPECIALS
    out[ids == V - 1] = BOS_ID
    return out


def test_logits_match_transformers(hf_folder):
    folder, hf, V = hf_folder
    model, tokenizer = load_hf(folder)
    model.eval()
    ids = hf_ids(V)
    with torch.no_grad():
        want = hf(ids).logits
        got, _ = model(ours_from_hf(ids, V))
    mapped = torch.cat([got[..., N_SPECIALS:N_SPECIALS + V - 1], got[..., EOS_ID:EOS_ID + 1]], dim=-1)
    torch.testing.assert_close(mapped, want, atol=1e-5, rtol=1e-5)
    # and the distribution: the ids GPT-2 never has (specials, the text "<|endoftext|>") get none of it
    torch.testing.assert_close(torch.log_softmax(mapped, -1), torch.log_softmax(want, -1), atol=1e-5, rtol=1e-5)
    probs = torch.softmax(got, -1)
    assert probs[..., [PAD_ID, BOS_ID, UNK_ID, N_SPECIALS + V - 1]].max() == 0


def test_tokenizer_matches_transformers(hf_folder):
    folder, _, V = hf_folder
    _, ours = load_hf(folder)
    theirs = AutoTokenizer.from_pretrained(str(folder))
    for text in [MIXED, "a man riding a wave", " leading space", "emoji 😀😀 twice", "café\n\nnew lines"]:
        assert ours.encode(text) == [i + N_SPECIALS for i in theirs(text)["input_ids"]]
        assert ours.decode(ours.encode(text)) == text


def test_import_export_import_is_exact(hf_folder, tmp_path):
    folder, hf, V = hf_folder
    model, tokenizer = load_hf(folder)
    out = save_hf(model, tokenizer, tmp_path / "export")
    again, tok2 = load_hf(out)
    assert tok2.itos == tokenizer.itos
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # transformers reads the export: same logits as the original GPT-2, same tokenizer
    reread = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    ids = hf_ids(V, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(reread(ids).logits, hf(ids).logits, atol=1e-6, rtol=1e-6)
    theirs = AutoTokenizer.from_pretrained(str(out))
    assert theirs(MIXED)["input_ids"] == [i - N_SPECIALS for i in tok2.encode(MIXED)]


def test_special_strings_stay_text(hf_folder):
    """Literal "<eos>" and "<|endoftext|>" in ordinary text: bytes, never a special token."""
    folder, _, V = hf_folder
    _, tok = load_hf(folder)
    text = "before <eos> middle <|endoftext|> after <pad><unk><bos>"
    ids = tok.encode(text)
    assert not {PAD_ID, BOS_ID, EOS_ID, UNK_ID, N_SPECIALS + V - 1} & set(ids)
    assert tok.decode(ids) == text


def test_block_size_keeps_the_first_positions(hf_folder):
    folder, hf, V = hf_folder
    model, _ = load_hf(folder, block_size=16)
    assert model.block_size == 16
    torch.testing.assert_close(model.transformer.wpe.weight, hf.transformer.wpe.weight[:16])
    with pytest.raises(HFCheckpointError, match="exceeds the checkpoint's 32 positions"):
        load_hf(folder, block_size=64)


def test_not_a_gpt2_folder_is_refused(tmp_path, hf_folder):
    with pytest.raises(HFCheckpointError, match="has no config.json"):
        load_hf(tmp_path)
    folder, _, _ = hf_folder
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["activation_function"] = "relu"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HFCheckpointError, match="activation_function 'relu'"):
        load_hf(bad)


def test_train_lm_fine_tunes_a_hugging_face_gpt2(hf_folder, tmp_path):
    """--hf_init: the data read with the checkpoint's BPE, <bos> and <eos> as GPT-2's <|endoftext|>:
    before any update the test NLL is transformers' own NLL of the test lines, each read from
    <|endoftext|> and ending in it; then it trains, resumes and its checkpoint exports."""
    from experiments import train_lm
    from experiments.core.checkpoint import load_checkpoint
    folder, hf, V = hf_folder
    lines = corpus(120, seed=1)
    for name, part in (("train", lines[:80]), ("val", lines[80:100]), ("test", lines[100:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    argv = ["--dataset", str(tmp_path / "train.txt"), "--val_file", str(tmp_path / "val.txt"), "--test_file",
            str(tmp_path / "test.txt"), "--hf_init", str(folder), "--batch_size", "8", "--eval_interval", "1",
            "--eval_samples", "0", "--num_samples", "2", "--progress", "false", "--out_dir", str(tmp_path / "runs"),
            "--run_name", "ft", "--lr", "1e-12", "--min_lr", "0", "--warmup_steps", "0", "--max_steps", "1"]
    metrics = train_lm.main(argv)
    theirs = AutoTokenizer.from_pretrained(str(folder))
    total = count = 0.0
    with torch.no_grad():
        for line in lines[100:]:
            ids = torch.tensor([[V - 1] + theirs(line)["input_ids"] + [V - 1]])
            logp = torch.log_softmax(hf(ids).logits[0, :-1], -1)
            total -= logp.gather(1, ids[0, 1:, None]).sum().item()
            count += ids.size(1) - 1
    assert metrics["test/nll"] == pytest.approx(total / count, abs=1e-5)
    # it trains (a real learning rate), resumes, and the checkpoint exports
    argv = [a for a in argv]
    argv[argv.index("--lr") + 1], argv[argv.index("--max_steps") + 1] = "1e-2", "6"
    after = train_lm.main(argv + ["--resume", "true"])
    assert after["test/nll"] < metrics["test/nll"]
    ckpt = load_checkpoint(tmp_path / "runs" / "ft" / "best.pt")
    assert ckpt["model_config"]["bos_as_eos"] and ckpt["tokenizer"]["level"] == "bpe"
    # exported, transformers reads the fine-tuned model: its logits are this model's
    from experiments import export
    from experiments.generators.generation import load_model
    out = export.main(["--run", str(tmp_path / "runs" / "ft"), "--out", str(tmp_path / "exported")])
    ours, _ = load_model(tmp_path / "runs" / "ft" / "best.pt", "cpu")
    reread = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    ids = hf_ids(V, seed=2, T=8)  # within the fine-tuned context (the data's longest line)
    with torch.no_grad():
        got, _ = ours(ours_from_hf(ids, V))
        want = reread(ids).logits
    mapped = torch.cat([got[..., N_SPECIALS:N_SPECIALS + V - 1], got[..., EOS_ID:EOS_ID + 1]], dim=-1)
    torch.testing.assert_close(mapped, want, atol=1e-5, rtol=1e-5)


def test_export_refuses_what_gpt2_cannot_hold(tmp_path):
    """A GPT-2 trained from scratch here reads <bos> with a row of its own: refused in one line."""
    from experiments import export, train_lm
    (tmp_path / "t.txt").write_text("\n".join(corpus(60)) + "\n", encoding="utf-8")
    train_lm.main(["--dataset", str(tmp_path / "t.txt"), "--level", "bpe", "--bpe_vocab_size", "300", "--n_layer", "1",
                   "--n_embd", "16", "--n_head", "2", "--max_steps", "2", "--eval_interval", "1", "--eval_samples",
                   "0", "--num_samples", "1", "--progress", "false", "--out_dir", str(tmp_path), "--run_name", "s"])
    with pytest.raises(HFCheckpointError, match="reads <bos> with a row of its own"):
        export.main(["--run", str(tmp_path / "s"), "--out", str(tmp_path / "x")])


def test_sample_and_score_read_a_hugging_face_folder(hf_folder, tmp_path):
    """--ckpt DIR: sample and score a Hugging Face GPT-2 folder directly; score's NLL is
    transformers' NLL of the references, each read from <|endoftext|> and ending in it."""
    from experiments import sample, score
    folder, hf, V = hf_folder
    texts = sample.main(["--ckpt", str(folder), "--num_samples", "4", "--max_new_tokens", "8"])
    assert len(texts) == 4
    refs = corpus(30, seed=3)
    (tmp_path / "refs.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    (tmp_path / "s.txt").write_text("\n".join(refs[:5]) + "\n", encoding="utf-8")
    figures = score.main(["--samples", str(tmp_path / "s.txt"), "--references", str(tmp_path / "refs.txt"),
                          "--ckpt", str(folder)])
    theirs = AutoTokenizer.from_pretrained(str(folder))
    total = count = 0.0
    with torch.no_grad():
        for line in refs:
            ids = torch.tensor([[V - 1] + theirs(line)["input_ids"] + [V - 1]])
            total -= torch.log_softmax(hf(ids).logits[0, :-1], -1).gather(1, ids[0, 1:, None]).sum().item()
            count += ids.size(1) - 1
    assert figures["nll"] == pytest.approx(total / count, abs=1e-5)
    n_bytes = sum(len(r.encode("utf-8")) + 1 for r in refs)
    assert figures["nll_bpb"] == pytest.approx(total / math.log(2) / n_bytes, abs=1e-5)


def test_a_gan_from_a_hugging_face_gpt2_exports_its_generators_lm(hf_folder, tmp_path):
    """train_gan --init_lm HFDIR: read with the folder's BPE, the pretrained generator's test NLL is
    the fine-tuning LM's at step 0; after the adversarial phase, export writes the EMA generator at
    its average style and zero noise, and transformers' logits of that folder are the generator's."""
    from experiments import export, train_gan
    from experiments.generators.generation import load_generator
    folder, hf, V = hf_folder
    lines = corpus(120, seed=1)
    for name, part in (("train", lines[:80]), ("val", lines[80:100]), ("test", lines[100:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    results = train_gan.main([
        "--dataset", str(tmp_path / "train.txt"), "--val_file", str(tmp_path / "val.txt"), "--test_file",
        str(tmp_path / "test.txt"), "--init_lm", str(folder), "--pretrain_steps", "0", "--adv_steps", "3",
        "--generator.style_mode", "adaln", "--noise_dim", "4", "--z_dim", "8", "--w_dim", "8", "--n_mlp", "2",
        "--discriminator.n_layer", "1", "--discriminator.n_head", "2", "--discriminator.n_embd", "16",
        "--batch_size", "8", "--g_lr", "1e-2", "--eval_interval", "3", "--eval_samples", "8", "--final_samples", "8",
        "--num_samples", "2", "--progress", "false", "--out_dir", str(tmp_path / "runs"), "--run_name", "g"])
    theirs = AutoTokenizer.from_pretrained(str(folder))
    total = count = 0.0
    with torch.no_grad():
        for line in lines[100:]:
            ids = torch.tensor([[V - 1] + theirs(line)["input_ids"] + [V - 1]])
            total -= torch.log_softmax(hf(ids).logits[0, :-1], -1).gather(1, ids[0, 1:, None]).sum().item()
            count += ids.size(1) - 1
    assert results["pretrained/test_nll"] == pytest.approx(total / count, abs=1e-5)
    out = export.main(["--run", str(tmp_path / "runs" / "g"), "--out", str(tmp_path / "exported")])
    gen, _, _ = load_generator(tmp_path / "runs" / "g" / "last.pt", "cpu")
    reread = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    ids = hf_ids(V, seed=2, T=8)
    with torch.no_grad():
        got, _ = gen(ours_from_hf(ids, V), w=gen.mapping.w_avg.expand(ids.size(0), -1),
                     noise=torch.zeros(ids.size(0), ids.size(1), gen.noise_channels))
        want = reread(ids).logits
    mapped = torch.cat([got[..., N_SPECIALS:N_SPECIALS + V - 1], got[..., EOS_ID:EOS_ID + 1]], dim=-1)
    torch.testing.assert_close(torch.log_softmax(mapped, -1), torch.log_softmax(want, -1), atol=1e-5, rtol=1e-5)
