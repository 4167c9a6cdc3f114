"""The oracle corpora: an LSTM stands in for the true distribution of text, the synthetic
benchmark of SeqGAN (Yu et al. 2017, "SeqGAN: Sequence Generative Adversarial Nets with
Policy Gradient").

Because the oracle stays available, any generated sequence can be scored by its negative
log-likelihood under the true distribution (NLL-oracle), which measures sample quality
exactly; NLL-test (the model's NLL on oracle samples) measures coverage.

Two oracles, one protocol (SeqGAN's), one code path for sampling and scoring
(`LSTMOracle`); they differ only in their weights and cell:

- `seqgan_oracle` (`SeqGANOracle`): SeqGAN's REAL oracle, the target LSTM whose weights
  the SeqGAN repository ships (save/target_params_py3.pkl), converted to numpy arrays in
  seqgan_oracle.npz (found as datasets/corpora.py says; sha256 checked). Its recurrence is
  SeqGAN's target_lstm.py, computed in float32 (the precision of SeqGAN's TensorFlow
  graph): h0 = c0 = 0, and with x the embedding of the previous token,
      i = sigmoid(x Wi + h Ui + bi)      f = sigmoid(x Wf + h Uf + bf)
      o = sigmoid(x Wog + h Uog + bog)   c~ = tanh(x Wc + h Uc + bc)
      c = f c + i c~                     h = o tanh(c)           logits = h Wo + bo.
  Its own samples score 5.750 NLL-oracle (published; 5.7485 measured on 10,000 with these
  arrays, 5.757 on the 10,000 of our training split, a draw of 10,000 varying by about 0.005);
  published NLL-oracle figures (MLE 9.038 and SeqGAN 8.736 in the SeqGAN paper's Table 1, LeakGAN
  7.038) are on this oracle.
- `oracle` (`Oracle`): TextDuel's own random oracle in SeqGAN's sizes, a torch.nn.LSTM with
  every parameter drawn from N(0, 1) under seed 88 (TextDuel's choice). It is NOT SeqGAN's
  oracle: other weights, and nn.LSTM adds two bias vectors (bias_ih + bias_hh, each N(0, 1):
  every gate's bias has variance 2, where SeqGAN's cell has one bias vector), so its figures
  are not comparable with published NLL-oracle numbers. Use `seqgan_oracle` for those.

The protocol, for both: vocabulary 5,000, embedding and hidden size 32; the input at step 0
is the embedding of start token 0 (SeqGAN's `start_token = 0`, which is also an ordinary
vocabulary id); every sequence is exactly SEQ_LEN = 20 tokens, with no end token
(Corpus.fixed_length = 20: NLL-test scores those 20 tokens and no <eos>, every sampler draws
exactly 20 tokens and never a special token, NLL-oracle scores samples of exactly 20 tokens).
Train 10,000, val 2,000, test 2,000 sequences, each split drawn with its own fixed seed
(base seed x 1000 + 0, 1, 2; base seed 88 for `oracle`, SEQGAN_SEED = 2017 for
`seqgan_oracle`), by inverse-CDF sampling from a torch.Generator. Sequences are written as
text of decimal token ids ("17 4032 ..."), and the corpus carries the fixed vocabulary
"0" ... "4999", so oracle id i is tokenizer id i + 4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 5000
EMB = 32
HIDDEN = 32
SEQ_LEN = 20
SEED = 88          # TextDuel's own random oracle (`oracle`): the seed of its N(0, 1) weights and base sampling seed
SEQGAN_SEED = 2017  # `seqgan_oracle`: base seed of its train / val / test draws (its weights are SeqGAN's)
START_TOKEN = 0
SIZES = {"train": 10_000, "val": 2_000, "test": 2_000}

# seqgan_oracle.npz: array name -> shape (SeqGAN's target_params under target_lstm.py's names)
SEQGAN_ARRAYS = {
    "embedding": (VOCAB, EMB),
    **{f"{w}{g}": (EMB if w == "W" else HIDDEN, HIDDEN) for g in ("i", "f", "og", "c") for w in ("W", "U")},
    **{f"b{g}": (HIDDEN,) for g in ("i", "f", "og", "c")},
    "Wo": (HIDDEN, VOCAB),
    "bo": (VOCAB,),
}


class LSTMOracle(nn.Module):
    """What both oracles share: `sample(n, seed)` and `nll(seqs, lengths)`. A subclass gives
    `_step(tok (B, 1), state) -> (logits (B, V), state)` (state None at the start) and
    `_run(inp (B, T)) -> (B, T, V)` logits, the teacher-forced pass over inputs."""

    def _step(self, tok, state):
        raise NotImplementedError

    def _run(self, inp):
        raise NotImplementedError

    def _logits(self, seqs):
        """seqs (B, T) oracle ids -> (B, T, V) logits for each token given the ones before it."""
        start = torch.full((seqs.size(0), 1), START_TOKEN, dtype=torch.long, device=seqs.device)
        return self._run(torch.cat([start, seqs[:, :-1]], dim=1))  # inputs: start token, then t1..t_{T-1}

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
                logits, state = self._step(tok, state)
                # inverse-CDF sampling: exact, and several times faster than
                # torch.multinomial over 5,000 categories on a CPU
                cdf = F.softmax(logits, dim=-1).cumsum(-1)                 # (b, V)
                u = torch.rand(b, 1, generator=g) * cdf[:, -1:]
                tok = torch.searchsorted(cdf, u).clamp_(max=VOCAB - 1)     # (b, 1)
                toks.append(tok)
            chunks.append(torch.cat(toks, dim=1))
        return torch.cat(chunks)

    @torch.no_grad()
    def nll(self, seqs: torch.Tensor, lengths: torch.Tensor | None = None, batch_size: int = 1024) -> float:
        """Mean NLL per token (nats) of oracle-id sequences (B, T<=SEQ_LEN) under the oracle.

        `lengths` (B,) counts the valid tokens of each row (shorter rows: a sample that
        ended early); tokens past a row's length are not scored. Rows are scored batch_size
        at a time (the (B, T, V) logits of 10,000 rows would take 4 GB).
        """
        nll = torch.cat([F.cross_entropy(self._logits(chunk).flatten(0, 1), chunk.flatten(), reduction="none")
                         .view(chunk.shape) for chunk in seqs.split(batch_size)])  # (B, T)
        if lengths is None:
            return nll.mean().item()
        valid = torch.arange(seqs.size(1))[None, :] < lengths[:, None]
        return (nll[valid].sum() / valid.sum().clamp(min=1)).item()


class Oracle(LSTMOracle):
    """TextDuel's own random oracle (`oracle`): nn.LSTM in SeqGAN's sizes, N(0, 1) weights
    from `seed`. Not SeqGAN's oracle (see the module docstring); `SeqGANOracle` is."""

    def __init__(self, seed: int = SEED):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMB)
        self.lstm = nn.LSTM(EMB, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, VOCAB)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():  # N(0, 1) everywhere: a peaked, far-from-uniform target
                p.copy_(torch.randn(p.shape, generator=g))
        self.requires_grad_(False)

    def _step(self, tok, state):
        out, state = self.lstm(self.emb(tok), state)
        return self.head(out[:, -1]), state

    def _run(self, inp):
        out, _ = self.lstm(self.emb(inp))  # (B, T, H)
        return self.head(out)              # (B, T, V)


class SeqGANOracle(LSTMOracle):
    """SeqGAN's target LSTM (`seqgan_oracle`) from its arrays (SEQGAN_ARRAYS), in float32,
    with the recurrence of SeqGAN's target_lstm.py written out (module docstring)."""

    def __init__(self, arrays: dict):
        super().__init__()
        missing = sorted(set(SEQGAN_ARRAYS) - set(arrays))
        if missing:
            raise ValueError(f"SeqGAN oracle arrays: missing {missing}")
        for name, shape in SEQGAN_ARRAYS.items():
            if tuple(arrays[name].shape) != shape:
                raise ValueError(f"SeqGAN oracle array {name} has shape {tuple(arrays[name].shape)}, expected {shape}")
            self.register_buffer(name, torch.as_tensor(np.asarray(arrays[name], dtype=np.float32)))
        # the four gates side by side (i, f, o, c~): x W + h U + b is then one product each,
        # the same sums as SeqGAN's four
        gates = ("i", "f", "og", "c")
        self.register_buffer("W", torch.cat([getattr(self, f"W{g}") for g in gates], dim=1))  # (E, 4H)
        self.register_buffer("U", torch.cat([getattr(self, f"U{g}") for g in gates], dim=1))  # (H, 4H)
        self.register_buffer("b", torch.cat([getattr(self, f"b{g}") for g in gates]))         # (4H,)

    @classmethod
    def from_npz(cls, path: str | Path) -> "SeqGANOracle":
        with np.load(path, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})

    def _cell(self, x, h, c):
        """One step: x (B, E) input, (h, c) (B, H) state -> new (h, c)."""
        i, f, o, c_new = (x @ self.W + h @ self.U + self.b).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(c_new)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def _step(self, tok, state):
        x = self.embedding[tok[:, -1]]  # (B, E)
        if state is None:
            state = (x.new_zeros(x.size(0), HIDDEN), x.new_zeros(x.size(0), HIDDEN))
        h, c = self._cell(x, *state)
        return h @ self.Wo + self.bo, (h, c)

    def _run(self, inp):
        x = self.embedding[inp]  # (B, T, E)
        h = c = x.new_zeros(x.size(0), HIDDEN)
        hs = []
        for t in range(inp.size(1)):
            h, c = self._cell(x[:, t], h, c)
            hs.append(h)
        return torch.stack(hs, dim=1) @ self.Wo + self.bo  # (B, T, V)


def as_text(seqs: torch.Tensor) -> list[str]:
    """(N, T) oracle ids -> lines "17 4032 ..."."""
    return [" ".join(map(str, row)) for row in seqs.tolist()]


def draw_splits(oracle: LSTMOracle, seed: int) -> dict[str, list[str]]:
    """Train / val / test sequences of an oracle as text, split i drawn with seed x 1000 + i."""
    return {name: as_text(oracle.sample(n, seed=seed * 1000 + i)) for i, (name, n) in enumerate(SIZES.items())}


def splits(seed: int = SEED) -> tuple[Oracle, dict[str, list[str]]]:
    """TextDuel's random oracle (`oracle`) and its train / val / test sequences as text."""
    oracle = Oracle(seed)
    return oracle, draw_splits(oracle, seed)


def seqgan_splits(path: str | Path) -> tuple[SeqGANOracle, dict[str, list[str]]]:
    """SeqGAN's oracle (`seqgan_oracle`) from its verified npz file and its sequences as text."""
    oracle = SeqGANOracle.from_npz(path)
    return oracle, draw_splits(oracle, SEQGAN_SEED)
