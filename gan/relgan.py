"""RelGAN's Gumbel-softmax parts (Nie et al. 2019, "RelGAN: Relational Generative Adversarial
Networks for Text Generation", Sec. 2.2 and 2.3; the released code, weilinie/RelGAN): a whole
sequence sampled from a recurrent generator with Gumbel noise, the hard tokens fed back and the
soft one-hots handed to the discriminator, and the schedules of the inverse temperature beta.

At every step t, with o_t the generator's logits and g_t standard Gumbel noise:
    y_t     = argmax(o_t + g_t)              the token (an exact sample of softmax(o_t)), fed back
    y_hat_t = softmax(beta * (o_t + g_t))    what D reads, (B, V), differentiable w.r.t. o_t
so a loss on D(y_hat) reaches the generator's parameters through y_hat and the recurrent state
(the hard tokens carry no gradient; RelGAN's lstm_vanilla.py feeds the hard token's embedding
back too). As beta grows, y_hat_t tends to the one-hot of y_t: its gradient's bias shrinks and
its variance grows. In the paper's words a larger beta_max "yields more exploration for better
sample diversity", a smaller one "more exploitation for better sample quality".

`gumbel_softmax` here is gan/relax.py's relaxation with RelGAN's own noise, -log(-log u): on a
CPU, two logarithms of a uniform draw are four times faster than relax.gumbel_noise's
exponential draw (1.6 against 6.5 ms for a (64, 5000) batch, one thread), and a sample draws T
of them, six samples per adversarial step.

The generator is a language model of baselines/ used through the LM protocol, as in
gan/seqgan.py: `init_cache(B)` and `forward(idx_new, cache=cache)`. The two sequence
protocols (a corpus's `fixed_length`) are gan/seqgan.py's:
- 0: a sequence ends with <eos> (included), at most T tokens; D reads one-hot <pad> rows after
  the end (the layout of gan/relax.real_inputs and of seqgan.as_ids for real sentences);
- L > 0: exactly L tokens, no <eos>, and no special token is ever sampled: their logits are
  -inf (seqgan.policy_logits), so their Gumbel-perturbed logit is -inf, they are never the
  argmax and their soft weight is exactly 0.

BETA_SCHEDULES are RelGAN's `get_fixed_temperature` (oracle_train.py, real_train.py), one line
each, beta at adversarial step n of N: from 1 at n = 0 up to beta_max ("no": beta_max
throughout). "exp" reaches beta_max at n = N, the others at n = N - 1, as in RelGAN's code.
(gan/relax.beta_schedule holds three of them under the GAN trainer's names, linear there
reaching beta_max at n = N.)

Dimension letters: B batch, T time, V vocabulary.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID
from gan.seqgan import policy_logits

# name -> beta(n, N, beta_max); RelGAN's names and formulas (utils: get_fixed_temperature)
BETA_SCHEDULES = {
    "no": lambda n, N, b: b,
    "lin": lambda n, N, b: 1 + n / max(N - 1, 1) * (b - 1),
    "exp": lambda n, N, b: b ** (n / N),
    "log": lambda n, N, b: 1 + (b - 1) / math.log(max(N, 2)) * math.log(n + 1),
    "sigmoid": lambda n, N, b: (b - 1) / (1 + math.exp((N / 2 - n) * 20 / N)) + 1,
    "quad": lambda n, N, b: (b - 1) / max(N - 1, 1) ** 2 * n ** 2 + 1,
    "sqrt": lambda n, N, b: (b - 1) / math.sqrt(max(N - 1, 1)) * math.sqrt(n) + 1,
}


def gumbel_softmax(logits, beta: float, generator: torch.Generator):
    """(B, V) logits -> (soft = softmax(beta * (logits + g)) (B, V), hard = argmax(logits + g) (B,)),
    g = -log(-log u), u ~ U(0, 1) from `generator` (RelGAN's add_gumbel); u is kept off 0 so that
    g is finite. A logit of -inf (a masked token) stays -inf: never drawn, soft weight 0."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    g = u.clamp_(min=torch.finfo(u.dtype).tiny).log_().neg_().log_().neg_()  # (B, V), in place
    perturbed = logits + g
    return F.softmax(beta * perturbed, dim=-1), perturbed.argmax(dim=-1)


def beta_at(step: int, total: int, beta_max: float, schedule: str = "exp") -> float:
    """The inverse temperature of adversarial step `step` (0-based) of `total`; steps past the end
    keep the value at `total`."""
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {schedule!r}; choose one of {sorted(BETA_SCHEDULES)}")
    if total <= 0 or beta_max < 1.0:
        raise ValueError(f"beta schedule: need total > 0 and beta_max >= 1, got {total}, {beta_max}")
    return float(BETA_SCHEDULES[schedule](min(max(step, 0), total), total, float(beta_max)))


def relaxed_sample(model, n: int, T: int, fixed_length: int, beta: float, generator: torch.Generator):
    """n sequences from <bos> with Gumbel-max tokens and their Gumbel-softmax relaxation ->
    (soft (n, T, V) float, targets (n, T) long).

    targets: the tokens, up to and including <eos> (fixed_length 0) or exactly T = fixed_length,
    IGNORE_INDEX after the end (gan/seqgan.py's layout). soft: softmax(beta * (o_t + g_t)) at
    every position up to the end, one-hot <pad> after it (what D reads of a finished sequence);
    it carries the graph back to the model's parameters unless called under torch.no_grad().
    All randomness comes from `generator`. The model's mode is left as it is (the LSTM has no
    dropout; RelGAN samples with the training graph)."""
    if fixed_length and fixed_length != T:
        raise ValueError(f"a fixed-length sample has T = fixed_length tokens, got T = {T}, fixed_length {fixed_length}")
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    cache = model.init_cache(n)
    inp = torch.full((n, 1), BOS_ID, dtype=torch.long, device=device)
    targets = torch.full((n, T), IGNORE_INDEX, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    rows = []
    for t in range(T):
        logits, _ = model(inp, cache=cache)  # (n, 1, V)
        soft, hard = gumbel_softmax(policy_logits(logits[:, -1], fixed_length), beta=beta, generator=generator)
        if t == 0:
            pad_row = F.one_hot(torch.tensor(PAD_ID, device=device), soft.size(-1)).to(soft.dtype)  # (V,)
        rows.append(torch.where(done[:, None], pad_row, soft))  # (n, V): <pad> after the end
        targets[:, t] = hard.masked_fill(done, IGNORE_INDEX)
        done = done | (hard == EOS_ID)
        if bool(done.all()):  # every sequence has ended: the rest is <pad>
            rows.extend(pad_row.expand(n, -1) for _ in range(T - 1 - t))
            break
        inp = hard[:, None]
    return torch.stack(rows, dim=1), targets  # (n, T, V), (n, T)
