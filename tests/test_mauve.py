"""MAUVE (experiments/scoring/mauve.py): the area under the divergence curve equals the reference
package's for given histograms; on features, one distribution against itself scores near 1 and
against a disjoint one near 0, and a model's features are its final states at each text's end."""

import numpy as np
import pytest
import torch

from baselines.gpt2 import GPT, GPTConfig
from datasets.tokenizers import BOS_ID, CharTokenizer
from experiments.scoring.mauve import divergence_curve, mauve, mauve_from_histograms, pca_reduce, text_features


# Values computed by mauve-text 0.4.0's own functions (get_divergence_curve_for_multinomials with
# np.linspace(1e-6, 1 - 1e-6, 25), scaling 5, then sklearn's auc both ways, as compute_mauve does).
PACKAGE = [
    ([0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], 0.2711696522515651),
    ([1.0, 0.0], [0.0, 1.0], 0.0040720962619612555),
    ([0.7, 0.2, 0.1], [0.6, 0.3, 0.1], 0.9969267349245576),
    ([0.25] * 4, [0.25] * 4, 0.75),  # identical histograms: 0.75, not 1 (ties at (1, 1) in the package's sort)
]


@pytest.mark.parametrize("p, q, expected", PACKAGE)
def test_area_equals_the_reference_package(p, q, expected):
    assert mauve_from_histograms(np.array(p), np.array(q)) == pytest.approx(expected, abs=1e-12)


def test_divergence_curve_by_hand():
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    curve = divergence_curve(p, q, size=3)
    assert curve[0].tolist() == [1.0, 0.0] and curve[-1].tolist() == [0.0, 1.0]  # the two end points
    # w = 0.5: R = (0.5, 0.5), KL(Q|R) = KL(P|R) = log 2 -> exp(-5 log 2) = 1/32 on both axes
    assert curve[2] == pytest.approx([1 / 32, 1 / 32])


def test_pca_keeps_the_components_that_explain_the_variance():
    rng = np.random.default_rng(0)
    data = np.zeros((500, 6))
    data[:, :2] = rng.normal(size=(500, 2)) * [10.0, 5.0]
    data[:, 2:] = rng.normal(size=(500, 4)) * 0.1
    assert pca_reduce(data, 0.9).shape == (500, 2)
    assert pca_reduce(data, 0.99999).shape[1] > 2  # the noise holds 0.03 % of the variance


def mixture(rng, centres, n):
    return centres[rng.integers(len(centres), size=n)] + 0.05 * rng.normal(size=(n, centres.shape[1]))


def test_same_distribution_scores_high_disjoint_low_and_partial_overlap_between():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 16))
    a, b = mixture(rng, centres, 600), mixture(rng, centres, 600)
    same = mauve(a, b, seed=0)
    far = mauve(a, mixture(rng, centres + 10.0 * np.sign(centres), 600), seed=0)
    half = mauve(a, mixture(rng, centres[:4], 600), seed=0)  # the model drops half the modes
    assert same > 0.9 and far < 0.05 and far < half < same


def test_features_are_the_final_state_at_each_texts_last_token():
    torch.manual_seed(0)
    tok = CharTokenizer.fit(["abc", "cab"])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.0))
    texts = ["abc", "a", "cabba"]
    feats = text_features(model, tok, texts, "cpu", batch_size=2)  # padded batches of two
    for text, f in zip(texts, feats):
        x = torch.tensor([[BOS_ID] + tok.encode(text)])  # <bos> and the tokens, alone: no padding
        with torch.no_grad():
            want = model.hidden(x)[0, -1]
        assert np.allclose(f, want.numpy(), atol=1e-6)


def test_the_judge_scores_mauve_on_its_scorer_and_refuses_it_without_one(tmp_path):
    from datasets import build_tokenizer
    from experiments.studies.comparison import CompareConfig, Judge
    from experiments.scoring.lm_score import ScorerConfig
    from experiments.scoring.samples import SampleTokenizer

    with pytest.raises(ValueError, match="mauve needs lm_score"):
        CompareConfig(dataset="numbers", mauve=True, lm_score=False)
    cfg = CompareConfig(dataset="numbers", mauve=True, reverse_lm_score=False, num_samples=300,
                        out_dir=str(tmp_path))  # the judge's cache goes under out_dir
    corpus = cfg.load()
    judge = Judge(cfg, ScorerConfig(steps=60, val_interval=30), corpus, SampleTokenizer(build_tokenizer(corpus)), "cpu")
    real = judge.score(corpus.train[:300])["mauve"]
    one = judge.score([corpus.train[0]] * 300)["mauve"]  # one sentence repeated: a collapsed generator
    assert real > 0.8 and one < 0.1


def test_kmeans_uses_every_bucket_when_texts_repeat():
    from experiments.scoring.mauve import kmeans
    rng = np.random.default_rng(0)
    data = np.vstack([np.zeros((300, 4)), rng.normal(size=(300, 4))])  # a collapsed model beside varied text
    labels = kmeans(data, 30, seed=0)
    assert len(np.unique(labels)) == 30
    with pytest.raises(ValueError, match="NaN"):
        kmeans(np.full((10, 2), np.nan), 2, seed=0)
