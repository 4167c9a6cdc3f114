"""One sampler for every language model in the registry (baselines.MODELS).

Temperature, top-k and nucleus (top-p, Holtzman et al. 2020) filtering, batched, with
stopping at <eos>; `banned` token ids are never drawn. Models that implement `init_cache`
are decoded incrementally (KV cache or recurrent state: linear in length); others are
re-run on the last `block_size` tokens at every step.

A fixed-length corpus (the oracles, Corpus.fixed_length = n) is sampled with eos_id=None and
banned = the special tokens (datasets.tokenizers.SPECIAL_IDS): exactly n tokens, none of
them special (experiments.generators.generation.lm_texts does this when given fixed_length).

The GAN generator (gan/generator.py) follows the same protocol, so `generate` can decode
it as well, but GAN runs sample it with its own `Generator.sample`, which also draws the
latent and the noise from the given torch.Generator and can return relaxed distributions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datasets.tokenizers import EOS_ID, PAD_ID


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None):
    """(B, V) logits -> (B, V) logits scaled by 1/temperature with filtered entries at -inf."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use top_k=1 for greedy decoding)")
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the mass before it already reaches top_p (keeps at least one)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def take_rows(x, rows):
    """x's tensors (nested in lists and tuples) cut to the batch rows `rows` (dim 0); anything else as is."""
    if torch.is_tensor(x):
        return x.index_select(0, rows)
    if isinstance(x, (list, tuple)):
        return type(x)(take_rows(v, rows) for v in x)
    return x


def keep_rows(cache, rows) -> None:
    """Keep only the batch rows `rows` (a long tensor) of an incremental-decoding cache: a KV cache, a
    recurrent state, the GAN generator's cache. Every cache here holds batch-first tensors in its
    attributes (lists and tuples of them, or None for a layer not reached yet), so one rule fits all."""
    for name, value in vars(cache).items():
        setattr(cache, name, take_rows(value, rows))


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             eos_id=EOS_ID, use_cache=True, generator=None, banned=None):
    """Extend idx (B, T) by up to max_new_tokens sampled tokens -> (B, T + n).

    A row that has produced eos_id is padded with PAD_ID afterwards; sampling ends early
    when every row has finished (eos_id=None: never, every row gets max_new_tokens tokens,
    as far as the context allows). A finished row leaves the batch: the model runs only on
    the rows still sampling (their cache rows kept by `keep_rows`), so a batch costs what its
    rows' lengths add up to, not B times its longest row. `generator` (a torch.Generator)
    makes sampling reproducible independently of the global RNG. `banned`: token ids whose
    logits are set to -inf before temperature and filtering, so they are never drawn (None:
    none; the random numbers drawn are the same either way).
    """
    was_training = model.training
    model.eval()
    B, T0 = idx.shape
    cached = use_cache and hasattr(model, "init_cache")
    # stay inside the context: the new tokens plus the prompt must fit
    max_new_tokens = min(max_new_tokens, model.block_size - idx.size(1) + 1) if cached else max_new_tokens
    out = torch.full((B, T0 + max_new_tokens), PAD_ID, dtype=idx.dtype, device=idx.device)
    out[:, :T0] = idx
    active = torch.arange(B, device=idx.device)  # the rows still sampling
    cache = model.init_cache(B) if cached else None
    banned = torch.as_tensor(list(banned), dtype=torch.long, device=idx.device) if banned else None
    step_input, n = idx, 0
    for t in range(max_new_tokens):
        if cached:
            logits, _ = model(step_input, cache=cache)
        else:
            logits, _ = model(out[active, :T0 + t][:, -model.block_size:])
        logits = logits[:, -1, :].float()
        if banned is not None:
            logits = logits.index_fill(-1, banned, float("-inf"))
        probs = F.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (active,)
        out[active, T0 + t] = nxt
        n = t + 1
        if eos_id is not None:
            going = nxt != eos_id
            if not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                active, nxt = active[keep], nxt[keep]
                if cached:
                    keep_rows(cache, keep)
        step_input = nxt[:, None]
    model.train(was_training)
    return out[:, :T0 + n]
