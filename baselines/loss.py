"""The training loss of the language-model protocol (see baselines/__init__.py), shared by
every model that returns `(logits, loss)`, the GAN generator included."""

from __future__ import annotations

import torch.nn.functional as F

from datasets.tokenizers import IGNORE_INDEX


def lm_loss(logits, targets):
    """logits (B, T, V), targets (B, T) -> the mean cross-entropy over targets != IGNORE_INDEX,
    computed in float32 (padding never counts)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)
