"""`oracle`: the synthetic benchmark of SeqGAN (Yu et al. 2017, "SeqGAN: Sequence
Generative Adversarial Nets with Policy Gradient").

A randomly initialised LSTM stands in for the true distribution of text: vocabulary
5,000, embedding and hidden size 32, every parameter drawn from N(0, 1) under a fixed
seed. It samples 10,000 training sequences of 20 tokens and separate validation and
test sets. Because the oracle stays available, any generated sequence can be scored by
its negative log-likelihood under the true distribution (NLL-oracle), which measures
sample quality exactly; NLL-test (the model's NLL on oracle samples) measures coverage.

The oracle starts every sequence from token 0, as SeqGAN's `start_token = 0`.
Sequences are written as text of decimal token ids ("17 4032 ..."), and the corpus
carries the fixed vocabulary "0" ... "4999", so oracle id i is tokenizer id i + 4.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 5000
EMB = 32
HIDDEN = 32
SEQ_LEN = 20
SEED = 88  # SeqGAN's oracle seed
START_TOKEN = 0
SIZES = {"train": 10_000, "val": 2_000, "test": 2_000}


class Oracle(nn.Module):
    """The target LSTM. `nll(seqs)` scores sequences of oracle ids under it."""

    def __init__(self, seed: int = SEED):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMB)
        self.lstm = nn.LSTM(EMB, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, VOCAB)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():  # N(0, 1) everywhere, as in SeqGAN: a peaked, far-from-uniform target
                p.copy_(torch.randn(p.shape, generator=g))
        self.requires_grad_(False)

    def _logits(self, seqs):
        """seqs (B, T) oracle ids -> (B, T, V) logits for each token given the ones before it."""
        start = torch.full((seqs.size(0), 1), START_TOKEN, dtype=torch.long, device=seqs.device)
        inp = torch.cat([start, seqs[:, :-1]], dim=1)  # (B, T)
        out, _ = self.lstm(self.emb(inp))              # (B, T, H)
        return self.head(out)                           # (B, T, V)

    @torch.no_grad()
    def sample(self, n: int, seed: int, batch_size: int = 2000) -> torch.Tensor:
        """n sequences of SEQ_LEN oracle ids, reproducible from `seed`."""
        g = torch.Generator().manual_seed(seed)
        chunks = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            tok = torch.full((b, 1), START_TOKEN, dtype=torch.long)
            state, toks = None, []
            for _ in range(SEQ_LEN):
                out, state = self.lstm(self.emb(tok), state)
                # inverse-CDF sampling: exact, and several times faster than
                # torch.multinomial over 5,000 categories on a CPU
                cdf = F.softmax(self.head(out[:, -1]), dim=-1).cumsum(-1)  # (b, V)
                u = torch.rand(b, 1, generator=g) * cdf[:, -1:]
                tok = torch.searchsorted(cdf, u).clamp_(max=VOCAB - 1)     # (b, 1)
                toks.append(tok)
            chunks.append(torch.cat(toks, dim=1))
        return torch.cat(chunks)

    @torch.no_grad()
    def nll(self, seqs: torch.Tensor, lengths: torch.Tensor | None = None) -> float:
        """Mean NLL per token (nats) of oracle-id sequences (B, T<=SEQ_LEN) under the oracle.

        `lengths` (B,) counts the valid tokens of each row (shorter rows: a sample that
        ended early); tokens past a row's length are not scored.
        """
        logits = self._logits(seqs)
        nll = F.cross_entropy(logits.transpose(1, 2), seqs, reduction="none")  # (B, T)
        if lengths is None:
            return nll.mean().item()
        valid = torch.arange(seqs.size(1))[None, :] < lengths[:, None]
        return (nll[valid].sum() / valid.sum().clamp(min=1)).item()


def splits(seed: int = SEED) -> tuple[Oracle, dict[str, list[str]]]:
    """The oracle and its train / val / test sequences as text (separate sampling seeds)."""
    oracle = Oracle(seed)
    out = {}
    for i, (name, n) in enumerate(SIZES.items()):
        seqs = oracle.sample(n, seed=seed * 1000 + i)
        out[name] = [" ".join(map(str, row)) for row in seqs.tolist()]
    return oracle, out
