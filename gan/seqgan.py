"""SeqGAN's policy-gradient parts (Yu et al. 2017, "SeqGAN: Sequence Generative Adversarial Nets
with Policy Gradient"): whole sequences sampled from a recurrent generator, Monte Carlo
rollout rewards from the discriminator, the REINFORCE loss, and the rollout network's update.

The generator is a language model of baselines/ with a recurrent state (SeqGAN's is the LSTM of
baselines/rnn.py), used through the LM protocol: teacher-forced `forward(idx)`, and incremental
`init_cache(B)` + `forward(idx_new, cache=cache)`. The rollouts branch the recurrent state: they
read and write `cache.state` (a tensor, or a tuple of tensors, batch first), so they need a
recurrent model; a KV-cache transformer would have to branch its cache instead.

Two sequence protocols (a corpus's `fixed_length`):
- 0: a sequence ends with <eos> (included, as in datasets.LMData's targets), at most T tokens;
- L > 0: exactly L tokens, no <eos>, and no special token is ever sampled (their logits are
  masked, `policy_logits`), as in SeqGAN's oracle benchmark.
Sequences travel as targets (B, T): token ids, IGNORE_INDEX after the end, the layout of
LMData's y, so real and generated ones look alike; `as_ids` gives what D reads (<pad> after
the end).

Rewards (the paper's Eq. 4) of a sequence Y_1:T, for N rollouts:
    Q_t = 1/N sum_n D(Y_1:t completed by the rollout policy, n-th draw)   t < T
    Q_T = D(Y_1:T)
where D(.) is the discriminator's probability of "real". A prefix that already holds <eos> is
complete, so its reward is D(Y_1:T) too, exactly. The generator's loss (Eq. 8, REINFORCE) is
    -sum_t log G(y_t | Y_1:t-1) Q_t,
summed over each sequence's tokens and averaged over the batch; the rewards are constants.

Dimension letters: B batch, N rollouts, T time, V vocabulary, R rollout rows ((T-1) * N * B).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, SPECIAL_IDS
from gan.ema import ema_update


def _device(model) -> torch.device:
    return next(itertools.chain(model.parameters(), model.buffers())).device


def _rows(state, idx):
    """Rows idx of a recurrent state (a tensor or a tuple of tensors, batch first)."""
    return tuple(s[idx] for s in state) if isinstance(state, tuple) else state[idx]


def _cat(states):
    """Recurrent states concatenated along the batch."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*states))
    return torch.cat(states)


def as_ids(targets):
    """Targets (B, T), IGNORE_INDEX after the end -> token ids (B, T), <pad> after the end (what D reads)."""
    return targets.masked_fill(targets == IGNORE_INDEX, PAD_ID)


def pad_targets(y, T: int):
    """LMData targets (B, t) -> (B, T), IGNORE_INDEX after the end (a real batch at the fakes' width)."""
    if y.size(1) > T:  # F.pad would crop silently
        raise ValueError(f"targets of {y.size(1)} tokens do not fit the {T} tokens of a generated sequence")
    return F.pad(y, (0, T - y.size(1)), value=IGNORE_INDEX)


def policy_logits(logits, fixed_length: int, temperature: float = 1.0):
    """The logits of the generator's policy: divided by the temperature; with a fixed length, the
    special tokens (<pad>, <bos>, <eos>, <unk>) masked out, so they are never drawn."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if fixed_length:
        logits = logits.index_fill(-1, torch.tensor(SPECIAL_IDS, device=logits.device), float("-inf"))
    return logits


@torch.no_grad()
def _draw(logits, fixed_length: int, generator, temperature: float):
    """(B, V) logits -> (B,) tokens drawn from the policy with `generator`.

    Inverse-CDF sampling on the unnormalised probabilities: exact, and ten times faster than
    torch.multinomial over a 5,000-word vocabulary on a CPU (the rollouts draw ~200,000 tokens
    per generator step). u is in [0, total), and the first index whose cumulative mass exceeds u
    is drawn, so a token of zero probability (a masked special token) never is."""
    logits = policy_logits(logits, fixed_length, temperature)
    # in place: the policy's logits are a fresh tensor or the model's own output, read by no one after
    cdf = logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_().cumsum_(dim=-1)  # (B, V), in place
    u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


@torch.no_grad()
def sample(model, n: int, T: int, fixed_length: int, generator: torch.Generator, temperature: float = 1.0):
    """n sequences from <bos> -> targets (n, T): up to and including <eos> (fixed_length 0), or
    exactly T = fixed_length tokens; IGNORE_INDEX after the end. All randomness from `generator`."""
    if fixed_length and fixed_length != T:
        raise ValueError(f"a fixed-length sample has T = fixed_length tokens, got T = {T}, fixed_length {fixed_length}")
    was_training = model.training
    model.eval()
    device = _device(model)
    cache = model.init_cache(n)
    inp = torch.full((n, 1), BOS_ID, dtype=torch.long, device=device)
    out = torch.full((n, T), IGNORE_INDEX, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(T):
        logits, _ = model(inp, cache=cache)  # (n, 1, V)
        nxt = _draw(logits[:, -1], fixed_length, generator, temperature)
        out[:, t] = nxt.masked_fill(done, IGNORE_INDEX)
        done |= nxt == EOS_ID
        if bool(done.all()):
            break
        inp = nxt[:, None]
    model.train(was_training)
    return out


def _prefix_states(model, ids):
    """The rollout network's state after <bos>, y_1 .. y_{t-1}, for t = 1 .. T-1: a list of T-1 states."""
    B, T = ids.shape
    cache = model.init_cache(B)
    inputs = torch.cat([torch.full((B, 1), BOS_ID, dtype=torch.long, device=ids.device), ids[:, :T - 2]], dim=1)
    states = []
    for t in range(T - 1):
        model(inputs[:, t:t + 1], cache=cache)
        states.append(cache.state)
    return states


@torch.no_grad()
def rollouts(model, targets, n_rollouts: int, fixed_length: int, generator: torch.Generator):
    """Every prefix Y_1:t (t = 1 .. T-1) of every sequence completed n_rollouts times by `model`
    -> token ids (T-1, N, B, T), <pad> after each end.

    All R = (T-1) * N * B completions run as one batch, ordered by prefix length: at step s only
    the rows whose prefix is at most T-1-s long still have tokens to draw, and they are the first
    rows, so the batch shrinks as the longest prefixes complete: N B sum_t (T-t) row-steps, half of
    N B (T-1)^2."""
    was_training = model.training
    model.eval()
    ids = as_ids(targets)
    B, T = ids.shape
    N = n_rollouts
    states = _prefix_states(model, ids)
    # rows ordered (t, n, b): the state after the first t-1 tokens, then y_t is fed
    cache = model.init_cache(B)
    cache.state = _cat([_rows(s, torch.arange(B, device=ids.device).repeat(N)) for s in states])
    t_row = torch.arange(1, T, device=ids.device).repeat_interleave(N * B)  # (R,) prefix length of each row
    b_row = torch.arange(B, device=ids.device).repeat(N * (T - 1))           # (R,) its sequence
    out = ids[b_row].clone()                                                  # (R, T) prefix + the rest, replaced below
    inp = ids[b_row, t_row - 1][:, None]                                      # (R, 1) y_t
    # a prefix that holds <eos> is complete: nothing to draw, it stays the sequence itself
    done = ((ids == EOS_ID).cumsum(dim=1) > 0)[b_row, t_row - 1]
    rows = torch.arange(len(t_row), device=ids.device)
    for s in range(T - 1):
        n = (T - 1 - s) * N * B  # rows with t + s <= T - 1: positions t + s still to fill
        cache.state, inp, done = _rows(cache.state, slice(0, n)), inp[:n], done[:n]
        logits, _ = model(inp, cache=cache)  # (n, 1, V)
        nxt = _draw(logits[:, -1], fixed_length, generator, 1.0)
        nxt = nxt.masked_fill(done, PAD_ID)
        out[rows[:n], t_row[:n] + s] = nxt
        done = done | (nxt == EOS_ID)
        inp = nxt[:, None]
    model.train(was_training)
    return out.view(T - 1, N, B, T)


@torch.no_grad()
def rollout_rewards(model, D, targets, n_rollouts: int, fixed_length: int, generator: torch.Generator,
                    chunk: int = 4096):
    """Q (B, T) of SeqGAN's Eq. 4 for generated targets (B, T): for t < T the mean over n_rollouts
    completions by `model` (the rollout network) of D's probability of real; D(Y) at the last step
    and wherever the prefix is already complete; 0 after a sequence's end. D reads in chunks of
    `chunk` sequences, in evaluation mode (no dropout)."""
    ids = as_ids(targets)
    B, T = ids.shape
    full = D.prob_real(ids)  # (B,)
    rewards = full[:, None].repeat(1, T)  # (B, T)
    if T > 1:
        completed = rollouts(model, targets, n_rollouts, fixed_length, generator).view(-1, T)  # (R, T)
        p = torch.cat([D.prob_real(c) for c in completed.split(chunk)])  # (R,)
        q = p.view(T - 1, n_rollouts, B).mean(dim=1).t()  # (B, T-1)
        complete = ((ids == EOS_ID).cumsum(dim=1) > 0)[:, :T - 1]  # prefix Y_1:t already ends
        rewards[:, :T - 1] = torch.where(complete, full[:, None], q)
    return rewards.masked_fill(targets == IGNORE_INDEX, 0.0)


def policy_gradient_loss(model, targets, rewards, fixed_length: int):
    """REINFORCE (the paper's Eq. 8): -sum_t log G(y_t | y_<t) Q_t over each sequence's tokens
    (through its <eos>), averaged over the batch. targets (B, T), rewards (B, T), constants."""
    B = targets.size(0)
    x = torch.cat([torch.full((B, 1), BOS_ID, dtype=torch.long, device=targets.device),
                   as_ids(targets)[:, :-1]], dim=1)  # (B, T) teacher-forced inputs
    logits, _ = model(x)
    logp = F.log_softmax(policy_logits(logits, fixed_length), dim=-1)  # (B, T, V)
    valid = targets != IGNORE_INDEX
    token_logp = logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    return -(token_logp * rewards.detach()).masked_fill(~valid, 0.0).sum() / B


def update_rollout(rollout, model, update_rate: float) -> None:
    """The rollout network as a delayed copy of the generator, after each generator step:
    beta <- update_rate * beta + (1 - update_rate) * theta (SeqGAN's code, update_rate 0.8;
    update_rate 0 is the paper's Algorithm 1, beta <- theta)."""
    ema_update(rollout, model, update_rate)
