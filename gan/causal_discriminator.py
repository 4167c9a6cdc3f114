"""A causal discriminator: a GPT-2 trunk (baselines/gpt2.py) scored at the <eos> position.

gan/discriminator.py reads a sentence bidirectionally and scores a CLS token; GPT-2 is causal and
has none. This variant reads a sentence as GPT-2 reads it, <bos> first, then the tokens and the
<eos> that ends them, and scores the hidden state at that <eos>: the one position that has seen
the whole sentence. So it can start from the weights of a GPT-2 that already knows the data (the
LM being guided: `from_lm`), the way a GAN's discriminator can start from the GAN's own.

Inputs are as gan/discriminator.py takes them from experiments/generators/guidance.py's
encode_texts: ids (B, T) = tokens, <eos>, <pad> ...; mask (B, T) True up to and including <eos>.
The trunk's positions are T + 1 (the <bos> in front); an LM trained on shorter inputs lends its
first positions and the rest keep their initialisation. Padding after <eos> cannot reach the
score: attention is causal.

Dimension letters: B batch, T time, C channels (n_embd).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from baselines.gpt2 import GPT, GPTConfig
from datasets.tokenizers import BOS_ID


@dataclass
class CausalDiscriminatorConfig:
    vocab_size: int = 0          # filled from the dataset's tokenizer
    block_size: int = 0          # longest input it reads: tokens and <eos> (the <bos> comes on top)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    bos_as_eos: bool = False     # as the LM it starts from reads <bos> (a Hugging Face GPT-2: as <eos>)

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.block_size + 1, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout, bias=self.bias,
                         bos_as_eos=self.bos_as_eos)


class CausalDiscriminator(nn.Module):
    def __init__(self, config: CausalDiscriminatorConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.trunk = GPT(config.gpt_config())  # its lm_head (tied to the embedding) is never read
        self.head = nn.Linear(config.n_embd, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, T) -> logits (B,), read at each row's <eos> (its last valid position)."""
        bos = torch.full_like(ids[:, :1], BOS_ID)
        h = self.trunk.hidden(torch.cat([bos, ids], dim=1))  # (B, T + 1, C)
        at = mask.long().sum(dim=1)  # <eos> at index n of ids is at n + 1 after <bos>: the count of valid ids
        return self.head(h[torch.arange(len(ids), device=ids.device), at]).squeeze(-1)

    @classmethod
    def from_lm(cls, lm: GPT, block_size: int, dropout: float = 0.0) -> "CausalDiscriminator":
        """A discriminator whose trunk starts as a copy of the GPT-2 `lm` (its embedding, positions,
        blocks and final LayerNorm); the head starts at zero, so at step 0 every score is 0 (odds 1)."""
        c = lm.config
        D = cls(CausalDiscriminatorConfig(vocab_size=c.vocab_size, block_size=block_size, n_layer=c.n_layer,
                                          n_head=c.n_head, n_embd=c.n_embd, dropout=dropout, bias=c.bias,
                                          bos_as_eos=c.bos_as_eos))
        state = dict(lm.state_dict())  # load_state_dict copies; only the position table is replaced
        wpe = D.trunk.transformer.wpe.weight.detach().clone()
        k = min(len(wpe), len(state["transformer.wpe.weight"]))
        wpe[:k] = state["transformer.wpe.weight"][:k]
        state["transformer.wpe.weight"] = wpe
        D.trunk.load_state_dict(state)
        nn.init.zeros_(D.head.weight)
        nn.init.zeros_(D.head.bias)
        return D.to(next(lm.parameters()).device)
