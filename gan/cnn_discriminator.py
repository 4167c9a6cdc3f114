"""SeqGAN's discriminator: a CNN sentence classifier with a highway layer (Yu et al. 2017,
"SeqGAN: Sequence Generative Adversarial Nets with Policy Gradient", Sec. 4 and the released
`discriminator.py`; the CNN of Kim 2014, the highway layer of Srivastava et al. 2015).

    ids (B, T) -> embedding (B, T, E)
      -> for each filter size k: num_filters[k] convolutions k tokens wide over the whole
         embedding (no padding), ReLU, max over time              -> (B, n_k)
      -> concatenated (B, F), F = sum of num_filters
      -> one highway layer: t = sigmoid(W_t h + b_t), h' = t * relu(W_g h + b_g) + (1 - t) * h
      -> dropout -> linear -> two scores (generated, real)

P(real) = softmax(scores)[:, 1] is the reward of SeqGAN's policy gradient (gan/seqgan.py).
`discriminator_loss` is SeqGAN's: cross-entropy on real (label 1) against generated (label
0), plus l2_reg * (||W||^2 + ||b||^2) / 2 of the output layer (TensorFlow's tf.nn.l2_loss).

D also reads distributions over the vocabulary, (B, T, V) float rows (one-hot, or the soft
one-hots of a Gumbel-softmax sample: the RelGAN-style trainer, experiments/trainers/relgan.py):
the embedding of a row is then row @ W, the expected embedding under it, which for a one-hot
row is exactly the embedding of its token, so real sentences may be read as ids or as one-hot
rows alike. `logit` is one raw score per sequence, log P(real) - log P(generated) = the
difference of the two scores, for the losses of gan/losses.py (RSGAN).

Initialisation as in the released code: embedding U(-1, 1); convolution and output weights
truncated normal with std 0.1 (cut at two standard deviations), their biases 0.1. The
highway layer keeps PyTorch's Linear init (the code leaves it to tf.get_variable's default).
Sequences shorter than the widest filter are padded on the right with <pad> (id 0), which is
also what follows <eos> in every sequence D reads, real or generated.

Dimension letters: B batch, T time, E embedding width, F pooled features, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets.tokenizers import PAD_ID


def int_list(text: str, what: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3], each > 0 (list settings are comma-separated strings on the command line)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise ValueError(f"{what} must be one or more positive integers, got {text!r}")
    return values


@dataclass
class CNNDiscriminatorConfig:
    vocab_size: int = 0            # filled from the dataset's tokenizer
    n_embd: int = 64               # token embedding width (SeqGAN: 64)
    filter_sizes: str = "1,2,3,4,5,6,7,8,9,10,15,20"                     # convolution widths in tokens (SeqGAN's)
    num_filters: str = "100,200,200,200,200,100,100,100,100,100,160,160"  # filters of each width (SeqGAN's)
    dropout: float = 0.25          # before the output layer, training only (SeqGAN: keep probability 0.75)
    l2_reg: float = 0.2            # weight of the output layer's L2 penalty in discriminator_loss (SeqGAN: 0.2)

    def __post_init__(self):
        sizes = int_list(self.filter_sizes, "CNNDiscriminatorConfig.filter_sizes")
        counts = int_list(self.num_filters, "CNNDiscriminatorConfig.num_filters")
        if len(sizes) != len(counts):
            raise ValueError(f"CNNDiscriminatorConfig: {len(sizes)} filter_sizes but {len(counts)} num_filters; "
                             "give one count per width")
        if self.n_embd <= 0 or self.vocab_size < 0:
            raise ValueError(f"CNNDiscriminatorConfig.n_embd must be > 0 and vocab_size >= 0, got {self.n_embd}, "
                             f"{self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0 or self.l2_reg < 0:
            raise ValueError(f"CNNDiscriminatorConfig: need 0 <= dropout < 1 and l2_reg >= 0, got {self.dropout}, "
                             f"{self.l2_reg}")

    @property
    def filters(self) -> list[tuple[int, int]]:
        """[(width, count), ...]"""
        return list(zip(int_list(self.filter_sizes, "filter_sizes"), int_list(self.num_filters, "num_filters")))


class Highway(nn.Module):
    """One highway layer (Srivastava et al. 2015) with a ReLU transform and no gate bias offset (SeqGAN's)."""

    def __init__(self, size: int):
        super().__init__()
        self.transform = nn.Linear(size, size)
        self.gate = nn.Linear(size, size)

    def forward(self, h):
        t = torch.sigmoid(self.gate(h))
        return t * F.relu(self.transform(h)) + (1.0 - t) * h


class CNNDiscriminator(nn.Module):
    def __init__(self, config: CNNDiscriminatorConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("CNNDiscriminatorConfig.vocab_size must be set (it comes from the dataset)")
        self.config = config
        self.min_len = max(k for k, _ in config.filters)  # the widest filter must fit at least once
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.convs = nn.ModuleList(nn.Conv1d(config.n_embd, n, k) for k, n in config.filters)
        n_features = sum(n for _, n in config.filters)
        self.highway = Highway(n_features)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(n_features, 2)  # scores of (generated, real)
        with torch.no_grad():
            nn.init.uniform_(self.wte.weight, -1.0, 1.0)
            for layer in [*self.convs, self.head]:
                nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
                nn.init.constant_(layer.bias, 0.1)

    def embed(self, x):
        """Token ids (B, T), or distributions over the vocabulary (B, T, V) -> embeddings (B, T, E),
        padded on the right with <pad> (as an id, or a one-hot row) to the widest filter."""
        if x.is_floating_point():
            if x.size(1) < self.min_len:
                pad = F.one_hot(torch.tensor(PAD_ID, device=x.device), x.size(-1)).to(x.dtype)  # (V,)
                x = torch.cat([x, pad.expand(x.size(0), self.min_len - x.size(1), -1)], dim=1)
            return x @ self.wte.weight  # (B, T, E): each row's expected embedding (a one-hot row: its token's)
        if x.size(1) < self.min_len:
            x = F.pad(x, (0, self.min_len - x.size(1)), value=PAD_ID)
        return self.wte(x)

    def forward(self, x):
        """x: token ids (B, T), or distributions over the vocabulary (B, T, V) -> scores (B, 2) of
        (generated, real)."""
        emb = self.embed(x).transpose(1, 2)  # (B, E, T): channels first for Conv1d
        pooled = [F.relu(conv(emb)).amax(dim=2) for conv in self.convs]  # each (B, n_k): max over time
        h = self.highway(torch.cat(pooled, dim=1))  # (B, F)
        return self.head(self.drop(h))

    def logit(self, x):
        """x (B, T) ids or (B, T, V) distributions -> (B,) raw scores log P(real) - log P(generated),
        differentiable (the input of an RSGAN loss)."""
        scores = self(x).float()  # (B, 2)
        return scores[:, 1] - scores[:, 0]

    @torch.no_grad()
    def prob_real(self, ids):
        """ids (B, T) -> P(real) (B,), in evaluation mode (no dropout: SeqGAN's keep probability 1.0
        when it computes rewards); the module's mode is restored after."""
        was_training = self.training
        self.eval()
        p = self(ids).float().softmax(dim=-1)[:, 1]
        self.train(was_training)
        return p

    def l2_penalty(self):
        """(||W||^2 + ||b||^2) / 2 of the output layer (tf.nn.l2_loss of both)."""
        return 0.5 * (self.head.weight.square().sum() + self.head.bias.square().sum())


def discriminator_loss(D: CNNDiscriminator, scores, labels):
    """SeqGAN's discriminator objective on a batch: the mean cross-entropy of D's scores (B, 2)
    against labels (B,) (1 real, 0 generated) plus l2_reg times D's output-layer L2 penalty."""
    return F.cross_entropy(scores.float(), labels) + D.config.l2_reg * D.l2_penalty()
