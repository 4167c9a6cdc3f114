"""Negative log-likelihood of a language model on a split, per real token.

Padding never counts: targets at padding are IGNORE_INDEX and are neither summed nor
counted, so the figure is nats per token (per character on names and Shakespeare),
<eos> included as in makemore. The pass is complete and in a fixed order, so the
same checkpoint always gives the same number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from datasets.tokenizers import IGNORE_INDEX


@torch.no_grad()
def lm_nll(model, batches, device, autocast_ctx=None) -> dict:
    """Sum of -log p over every target token / number of target tokens (nats),
    with bits per token and perplexity derived from it."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if autocast_ctx is not None:
            with autocast_ctx():
                logits, _ = model(x)
        else:
            logits, _ = model(x)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                              ignore_index=IGNORE_INDEX, reduction="sum")
        total += nll.item()
        count += int((y != IGNORE_INDEX).sum())
    model.train(was_training)
    mean = total / max(count, 1)
    return {"nll": mean, "bits": mean / math.log(2), "ppl": math.exp(mean), "tokens": count}
