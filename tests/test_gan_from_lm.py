"""A GAN whose generator starts as a pretrained GPT-2 (gan/generator.py, gpt2_blocks,
Generator.from_lm; train_gan --init_lm): at step 0 it is the LM exactly, its zero-initialised
branches still learn, the adaln variant folds back into a GPT-2 (to_lm, experiments.export), and
the trainer's pretrained/* figures are the LM's own."""

import pytest
import torch

from baselines.gpt2 import GPT, GPTConfig
from experiments import export, train_gan, train_lm
from experiments.core.checkpoint import CheckpointError, load_checkpoint
from experiments.generators.generation import load_generator
from gan import Generator, GeneratorConfig
from gan.mapping import MappingConfig

STYLES = ("cross_attn", "adaln")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_lm(seed=0, **kw):
    """A random GPT-2 with a Hugging Face GPT-2's reading of <bos> and its never-predicted ids, its
    biases and LayerNorms moved off their initial values so that their mapping is tested too."""
    torch.manual_seed(seed)
    lm = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32, bos_as_eos=True,
                       never_predict="0,1,3", **kw))
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return lm.eval()


def small(style):
    return GeneratorConfig(style_mode=style, noise_dim=4, n_style_tokens=2,
                           mapping=MappingConfig(z_dim=8, w_dim=8, n_mlp=2))


def ids(B=3, T=12, V=40, seed=1):
    x = torch.randint(4, V, (B, T), generator=torch.Generator().manual_seed(seed))
    x[:, 0] = 1  # <bos>
    return x


@pytest.mark.parametrize("style", STYLES)
def test_step_zero_next_token_distribution_is_the_lms(style):
    """Whatever z and the noise, teacher-forced and token by token with the cache."""
    lm = tiny_lm()
    gen = Generator.from_lm(lm, small(style), block_size=12).eval()
    assert gen.config.gpt2_blocks and gen.config.bos_as_eos and gen.config.never_predict == "0,1,3"
    x = ids()
    with torch.no_grad():
        want = torch.softmax(lm(x)[0], -1)
        for seed in (0, 1):
            torch.manual_seed(seed)
            z = torch.randn(3, 8)
            got = torch.softmax(gen(x, z=z, noise=torch.randn(3, 12, gen.noise_channels))[0], -1)
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        cache = gen.init_cache(3)
        steps = [gen(x[:, t:t + 1], cache=cache)[0] for t in range(12)]
    torch.testing.assert_close(torch.softmax(torch.cat(steps, 1), -1), want, atol=1e-6, rtol=0)
    assert want[..., [0, 1, 3]].max() == 0  # never-predicted ids stay at zero mass


@pytest.mark.parametrize("style", STYLES)
def test_the_zero_branches_learn_to_use_the_latent(style):
    """The style and noise branches start at zero but their gradients do not: after a few steps of
    teaching one latent one sentence and another latent another, the two latents give different
    distributions."""
    gen = Generator.from_lm(tiny_lm(), small(style), block_size=12)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    x = ids()
    z = torch.randn(2, 8)
    for _ in range(3):
        loss = gen(x[:1], targets=x[1:2], z=z[:1])[1] + gen(x[:1], targets=x[2:3], z=z[1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    scales = [blk.noise.scale.abs().max().item() for blk in gen.transformer.h]
    assert min(scales) > 0, "the noise scales never moved"
    gen.eval()
    with torch.no_grad():
        diff = (gen(x[:1], z=z[:1])[0].softmax(-1) - gen(x[:1], z=z[1:])[0].softmax(-1)).abs().max()
    assert diff > 1e-4


def test_adaln_generator_folds_into_a_gpt2():
    """to_lm: the generator at one style and zero noise is a GPT-2, exactly (after every parameter
    has moved); a cross-attention style is refused in one line."""
    gen = Generator.from_lm(tiny_lm(), small("adaln"), block_size=12)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.1 * torch.randn_like(p))
        gen.mapping.w_avg.normal_()
    gen.eval()
    lm = gen.to_lm().eval()
    x = ids()
    with torch.no_grad():
        want = gen(x, w=gen.mapping.w_avg.expand(3, -1), noise=torch.zeros(3, 12, gen.noise_channels))[0]
        got = lm(x)[0]
    finite = torch.isfinite(want)
    assert torch.equal(finite, torch.isfinite(got))
    torch.testing.assert_close(got[finite], want[finite], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="style_mode adaln"):
        Generator.from_lm(tiny_lm(), small("cross_attn"), block_size=12).to_lm()
    with pytest.raises(ValueError, match="16 positions"):
        Generator.from_lm(tiny_lm(), small("adaln"), block_size=20)


LM = ["--dataset", "numbers", "--model", "gpt2", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
      "--batch_size", "16", "--max_steps", "30", "--lr", "3e-3", "--eval_interval", "15", "--eval_samples", "0",
      "--num_samples", "2", "--progress", "false"]
GAN = ["--dataset", "numbers", "--noise_dim", "4", "--n_style_tokens", "2", "--z_dim", "8", "--w_dim", "8",
       "--n_mlp", "2", "--discriminator.n_layer", "1", "--discriminator.n_head", "2", "--discriminator.n_embd", "16",
       "--batch_size", "8", "--g_lr", "1e-3", "--d_lr", "1e-3", "--log_interval", "2", "--eval_interval", "4",
       "--eval_batch_size", "1024", "--eval_samples", "16", "--final_samples", "16", "--num_samples", "4",
       "--progress", "false", "--pretrain_steps", "0"]


def test_train_gan_starts_from_a_trained_gpt2_run(tmp_path):
    """--init_lm RUN: the pretrained generator the adversarial phase starts from is the LM, so its
    test NLL is the LM's own; the adversarial phase then moves it; a run on another vocabulary, MLE
    pretraining beside it, and a non-GPT-2 are refused in one line."""
    lm_results = train_lm.main(LM + ["--out_dir", str(tmp_path), "--run_name", "lm"])
    results = train_gan.main(GAN + ["--out_dir", str(tmp_path), "--run_name", "gan", "--adv_steps", "4",
                                    "--init_lm", str(tmp_path / "lm"), "--generator.style_mode", "adaln"])
    assert results["pretrain_steps"] == 0 and results["adv_steps"] == 4
    assert results["pretrained/test_nll"] == pytest.approx(lm_results["test/nll"], abs=1e-5)
    assert results["ema/test_nll"] != results["pretrained/test_nll"]
    gen, _, ckpt = load_generator(tmp_path / "gan" / "last.pt", "cpu")
    assert ckpt["model_config"]["gpt2_blocks"] and ckpt["model_config"]["n_embd"] == 16
    # resumes into the same generator
    again = train_gan.main(GAN + ["--out_dir", str(tmp_path), "--run_name", "gan", "--adv_steps", "6",
                                  "--init_lm", str(tmp_path / "lm"), "--generator.style_mode", "adaln",
                                  "--resume", "true"])
    assert again["adv_steps"] == 6
    with pytest.raises(CheckpointError, match="vocabulary"):
        train_gan.main(GAN + ["--out_dir", str(tmp_path), "--run_name", "other", "--adv_steps", "2",
                              "--init_lm", str(tmp_path / "lm"), "--level", "char"])
    with pytest.raises(ValueError, match="init_lm replaces MLE pretraining"):
        train_gan.parse_args(["--init_lm", str(tmp_path / "lm")])
    train_lm.main(["--dataset", "numbers", "--model", "mlp", "--max_steps", "2", "--eval_interval", "2",
                   "--eval_samples", "0", "--num_samples", "1", "--progress", "false", "--out_dir", str(tmp_path),
                   "--run_name", "mlp"])
    with pytest.raises(CheckpointError, match="starts from a GPT-2"):
        train_gan.main(GAN + ["--out_dir", str(tmp_path), "--run_name", "x", "--adv_steps", "2",
                              "--init_lm", str(tmp_path / "mlp")])
    # a word-level generator is no Hugging Face GPT-2: export says so
    from baselines.hf_gpt2 import HFCheckpointError
    with pytest.raises(HFCheckpointError, match="byte-level BPE"):
        export.main(["--run", str(tmp_path / "gan"), "--out", str(tmp_path / "exported")])
    assert load_checkpoint(tmp_path / "gan" / "pretrained.pt")["adv_step"] == 0
