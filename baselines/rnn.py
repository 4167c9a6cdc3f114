"""Recurrent language models: vanilla RNN (Elman 1990), GRU (Cho et al. 2014) and LSTM
(Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

As in makemore's `RNN`: token embeddings, a learned start state, one recurrent cell
unrolled over time with a Python loop, and a linear head on the hidden state. The cells
are written from their equations, not with torch.nn.RNN/GRU/LSTM, but each keeps its
weights in PyTorch's layout (weight_ih, weight_hh, bias_ih, bias_hh, gates stacked in
PyTorch's order), so a cell's state_dict loads into torch.nn.RNNCell / GRUCell /
LSTMCell and the two give the same outputs; the tests check this.

The three variants share `RecurrentLM`; the config class picks the cell (`RNNConfig`,
`GRUConfig`, `LSTMConfig`, each with a fixed `cell`). Decoding is incremental:
`init_cache(batch_size)` gives a `RecurrentState` and `forward(idx_new, cache=state)`
continues from it, so sampling is linear in length. The recurrence itself has no
length limit; `block_size` is the longest sequence the trainer feeds.

Dimension letters: B batch, T time, E embedding width (n_embd), H hidden width
(n_embd2), V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.loss import lm_loss


class _Cell(nn.Module):
    """Weights in PyTorch's layout: n_gates blocks of H rows each, stacked."""

    n_gates = 1
    n_states = 1  # tensors in the state: h, or (h, c) for the LSTM

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        G, H = self.n_gates, hidden_size
        self.hidden_size = H
        self.weight_ih = nn.Parameter(torch.empty(G * H, input_size))  # (G*H, E)
        self.weight_hh = nn.Parameter(torch.empty(G * H, H))           # (G*H, H)
        self.bias_ih = nn.Parameter(torch.empty(G * H))
        self.bias_hh = nn.Parameter(torch.empty(G * H))
        # PyTorch's init for its recurrent cells: U(-1/sqrt(H), 1/sqrt(H)) everywhere
        bound = 1.0 / math.sqrt(H)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


class RNNCell(_Cell):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    def forward(self, x, h):
        return torch.tanh(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))


class GRUCell(_Cell):
    """Gated recurrent unit, PyTorch's formulation (gates stacked r, z, n):

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     candidate state
        h' = (1 - z) * n + z * h
    """

    n_gates = 3

    def forward(self, x, h):
        x_r, x_z, x_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=1)  # each (B, H)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)  # each (B, H)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)  # the reset gate scales (W_hn h + b_hn), bias included
        return (1 - z) * n + z * h


class LSTMCell(_Cell):
    """Long short-term memory, PyTorch's formulation (gates stacked i, f, g, o):

        i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)        input gate
        f  = sigmoid(W_if x + b_if + W_hf h + b_hf)        forget gate
        g  = tanh(W_ig x + b_ig + W_hg h + b_hg)           candidate cell
        o  = sigmoid(W_io x + b_io + W_ho h + b_ho)        output gate
        c' = f * c + i * g
        h' = o * tanh(c')
    """

    n_gates = 4
    n_states = 2

    def forward(self, x, state):
        h, c = state
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c


CELLS = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


@dataclass
class RecurrentConfig:
    """Fields shared by the three recurrent models; use RNNConfig, GRUConfig or LSTMConfig."""

    cell: ClassVar[str] = ""  # set by each subclass; not a field, so asdict() leaves it out
    vocab_size: int = 0       # filled from the dataset's tokenizer
    block_size: int = 0       # longest sequence the trainer feeds; filled from the dataset
    n_embd: int = 64          # token embedding width (makemore: 64)
    n_embd2: int = 64         # hidden state width (makemore: 64)
    init_std: float = 0.0     # 0: PyTorch's init (cell U(+-1/sqrt(H)), embedding N(0, 1), head U(+-1/sqrt(H)));
                              # > 0: every weight N(0, init_std), as SeqGAN's generator (0.1); see RecurrentLM

    def __post_init__(self):
        name = type(self).__name__
        if not (self.init_std >= 0 and math.isfinite(self.init_std)):
            raise ValueError(f"{name}.init_std must be >= 0 (0 = PyTorch's init), got {self.init_std}")
        if self.cell not in CELLS:
            raise ValueError(f"{name} has no cell type; use RNNConfig, GRUConfig or LSTMConfig")
        for attr in ("n_embd", "n_embd2"):
            if getattr(self, attr) <= 0:
                raise ValueError(f"{name}.{attr} must be positive, got {getattr(self, attr)}")
        if self.vocab_size < 0 or self.block_size < 0:
            raise ValueError(f"{name}.vocab_size and block_size must be >= 0 (0 = take from the dataset)")


@dataclass
class RNNConfig(RecurrentConfig):
    cell: ClassVar[str] = "rnn"   # ~12k params on names at the defaults


@dataclass
class GRUConfig(RecurrentConfig):
    cell: ClassVar[str] = "gru"   # ~29k params on names at the defaults


@dataclass
class LSTMConfig(RecurrentConfig):
    cell: ClassVar[str] = "lstm"  # ~37k params on names at the defaults


class RecurrentState:
    """The recurrent state after the tokens seen so far, for incremental decoding."""

    def __init__(self, state):
        self.state = state  # h (B, H), or (h, c) for the LSTM
        self.pos = 0        # number of tokens consumed


class RecurrentLM(nn.Module):
    def __init__(self, config: RecurrentConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError(f"{type(config).__name__}.vocab_size and block_size must be set (they come from the dataset)")
        self.config = config
        self.block_size = config.block_size
        self.cell = CELLS[config.cell](config.n_embd, config.n_embd2)
        # the learned starting state: h, and c for the LSTM
        self.start = nn.Parameter(torch.zeros(self.cell.n_states, config.n_embd2))  # (n_states, H)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd2, config.vocab_size)
        if config.init_std > 0:
            self._normal_init(config.init_std)

    @torch.no_grad()
    def _normal_init(self, std: float) -> None:
        """SeqGAN's generator init: embedding, cell and head weights and biases N(0, std), one
        bias vector per gate (bias_hh zero: SeqGAN's cell has one, so a gate's bias variance
        stays std^2), the start state zero. On SeqGAN's oracle this matters: with std 0.1 the
        MLE LSTM reaches SeqGAN's NLL-oracle (~9.04), with PyTorch's init (embedding N(0, 1))
        it levels off ~0.25 higher."""
        for p in (self.wte.weight, self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih,
                  self.lm_head.weight, self.lm_head.bias):
            p.normal_(0.0, std)
        self.cell.bias_hh.zero_()

    def init_cache(self, batch_size: int) -> RecurrentState:
        start = self.start[:, None, :].expand(-1, batch_size, -1)  # (n_states, B, H)
        return RecurrentState(start[0] if self.cell.n_states == 1 else tuple(start))

    def forward(self, idx, targets=None, cache: RecurrentState | None = None):
        """idx (B, T) -> logits (B, T, V); with a cache, idx continues the cached sequence."""
        B, T = idx.shape
        state = (cache if cache is not None else self.init_cache(B)).state
        emb = self.wte(idx)  # (B, T, E)
        hiddens = []
        for t in range(T):
            state = self.cell(emb[:, t], state)
            hiddens.append(state if self.cell.n_states == 1 else state[0])  # h: (B, H)
        if cache is not None:
            cache.state = state
            cache.pos += T
        hidden = torch.stack(hiddens, dim=1)  # (B, T, H)
        logits = self.lm_head(hidden)         # (B, T, V)
        loss = lm_loss(logits, targets) if targets is not None else None
        return logits, loss
