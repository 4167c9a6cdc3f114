"""MAUVE (Pillutla et al. 2021, "MAUVE: Measuring the Gap Between Neural Text and Human Text"):
one number in (0, 1] for how close a model's text distribution is to human text, quality and
diversity together. Higher is closer.

The procedure of the reference implementation (the `mauve-text` package, 0.4.0), step by step:
embed both text sets; L2-normalise the features; PCA on the two sets together, keeping the
leading components that explain 90 % of the variance; k-means into n/10 clusters (n the smaller
set; best of 5 runs, at most 500 iterations); a histogram of each set over the clusters; the
divergence curve (exp(-c KL(Q|R)), exp(-c KL(P|R))) for the mixtures R = w P + (1 - w) Q over 25
weights in [1e-6, 1 - 1e-6] with its two end points, c = 5; MAUVE = the area under it (the mean of
the two ways of integrating it, as the package does). `mauve_from_histograms` equals the package's
figures for given histograms (tests/test_mauve.py checks values the package computed).

Where TextDuel deliberately differs: the features. The package embeds with GPT-2 large (the last
token's final hidden state); TextDuel has no pretrained model offline, so the features are the
same kind of state (final layer, after ln_f, at the text's last token) of the comparison's own
scorer GPT-2 (experiments/scoring/lm_score.py: a small model trained on the corpus' training
split). So TextDuel's MAUVE figures rank models within one comparison; they are NOT comparable with
published MAUVE figures on GPT-2-large features. The k-means is plain Lloyd's with random initial
centroids drawn from the distinct data points and empty clusters refounded (the package uses
faiss'), so cluster boundaries, not the procedure, differ between the two.
"""

from __future__ import annotations

import numpy as np
import torch

from datasets.batching import SequenceSplit
from experiments.scoring.lm_score import needed_block_size


@torch.no_grad()
def text_features(model, tokenizer, texts, device, batch_size: int = 256) -> np.ndarray:
    """(N, C): the GPT-2's final hidden state (after ln_f) at each text's last token."""
    if needed_block_size(tokenizer, texts) > model.block_size:
        raise ValueError(f"a text is longer than the feature model's block_size {model.block_size}")
    split = SequenceSplit(list(texts), tokenizer, model.block_size)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(split), batch_size):
        idx = list(range(i, min(i + batch_size, len(split))))
        x, _ = split.rows(idx)
        h = model.hidden(x.to(device))  # (B, T, C)
        last = (split.lengths[idx] - 1).to(device)  # inputs are <bos> + tokens: the last token's position
        out.append(h[torch.arange(len(idx), device=device), last].float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float64)


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two histograms; infinite where q misses mass that p has."""
    if np.any((p > 0) & (q == 0)):
        return np.inf
    m = (p > 0) & (q > 0)
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def divergence_curve(p: np.ndarray, q: np.ndarray, size: int = 25, c: float = 5.0) -> np.ndarray:
    """(size + 2, 2): the points (exp(-c KL(Q|R_w)), exp(-c KL(P|R_w))), R_w = w P + (1 - w) Q,
    with the end points (1, 0) and (0, 1) of w -> 0 and w -> 1."""
    points = [[0.0, np.inf]]
    for w in np.linspace(1e-6, 1 - 1e-6, size):
        r = w * p + (1 - w) * q
        points.append([kl(q, r), kl(p, r)])
    points.append([np.inf, 0.0])
    return np.exp(-c * np.asarray(points))


def mauve_from_histograms(p: np.ndarray, q: np.ndarray, size: int = 25, c: float = 5.0) -> float:
    """The area under the divergence curve, integrated along each axis and averaged."""
    x, y = divergence_curve(np.asarray(p, float), np.asarray(q, float), size, c).T
    ix, iy = np.argsort(x), np.argsort(y)
    return float(0.5 * (np.trapezoid(y[ix], x[ix]) + np.trapezoid(x[iy], y[iy])))


def pca_reduce(data: np.ndarray, explained_variance: float = 0.9) -> np.ndarray:
    """Centred data projected on the fewest leading principal components whose share of the
    variance reaches explained_variance (the package: the first index where the cumulative
    share is >= it, that component included)."""
    centred = data - data.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    share = np.cumsum(s ** 2) / np.sum(s ** 2)
    keep = int(np.argmax(share >= explained_variance - 1e-12)) + 1
    return centred @ vt[:keep].T


def kmeans(data: np.ndarray, k: int, seed: int, redo: int = 5, max_iter: int = 500) -> np.ndarray:
    """Cluster labels of the best (lowest within-cluster sum of squares) of `redo` Lloyd runs, each
    from k distinct data points drawn at random (repeated texts give repeated rows: drawn once);
    a cluster left empty takes the point farthest from its centroid; a run stops when no label
    changes."""
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(data, dtype=torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("MAUVE: the features hold NaN or inf (a diverged feature model?)")
    distinct = torch.as_tensor(np.unique(data, axis=0), dtype=torch.float64)
    k = min(k, len(distinct))  # more buckets than distinct points could only stay empty
    best, best_labels = np.inf, None
    for _ in range(redo):
        centroids = distinct[torch.as_tensor(rng.choice(len(distinct), size=k, replace=False))]
        labels = None
        for _ in range(max_iter):
            dist = torch.cdist(x, centroids)
            new = dist.argmin(dim=1)
            for empty in np.flatnonzero(torch.bincount(new, minlength=k).numpy() == 0):
                far = int(dist[torch.arange(len(x)), new].argmax())  # the worst-served point founds it
                new[far], dist[far] = int(empty), 0.0
            if labels is not None and torch.equal(new, labels):
                break
            labels = new
            counts = torch.bincount(labels, minlength=k).unsqueeze(1)
            sums = torch.zeros_like(centroids).index_add_(0, labels, x)
            centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        inertia = float(((x - centroids[labels]) ** 2).sum())
        if inertia < best:
            best, best_labels = inertia, labels.numpy()
    return best_labels


def mauve(p_features: np.ndarray, q_features: np.ndarray, num_buckets: int = 0, explained_variance: float = 0.9,
          redo: int = 5, max_iter: int = 500, seed: int = 25) -> float:
    """MAUVE between two feature sets (P: human text, Q: the model's, as the package names them);
    num_buckets 0 = the package's 'auto', n / 10 for the smaller set (at least 2)."""
    if len(p_features) < 2 or len(q_features) < 2:
        raise ValueError("MAUVE needs at least two texts on each side")
    k = num_buckets or max(2, int(round(min(len(p_features), len(q_features)) / 10)))
    data = np.vstack([q_features, p_features]).astype(np.float64)
    data = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-12)  # L2, as the package
    labels = kmeans(pca_reduce(data, explained_variance), k, seed, redo, max_iter)
    q_hist = np.bincount(labels[:len(q_features)], minlength=k) / len(q_features)
    p_hist = np.bincount(labels[len(q_features):], minlength=k) / len(p_features)
    return mauve_from_histograms(p_hist, q_hist)
