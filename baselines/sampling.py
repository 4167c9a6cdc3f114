"""One sampler for every language model in the registry (baselines.MODELS).

Temperature, top-k and nucleus (top-p, Holtzman et al. 2020) filtering, batched, with
stopping at <eos>; `banned` token ids are never drawn. Models that implement `init_cache`
are decoded incrementally (KV cache or recurrent state: linear in length); others are
re-run on the last `block_size` tokens at every step.

A fixed-length corpus (the oracles, Corpus.fixed_length = n) is sampled with eos_id=None and
banned = the special tokens (datasets.tokenizers.SPECIAL_IDS): exactly n tokens, none of
them special (experiments.generation.lm_texts does this when given fixed_length).

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


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             eos_id=EOS_ID, use_cache=True, generator=None, banned=None):
    """Extend idx (B, T) by up to max_new_tokens sampled tokens -> (B, T + n).

    A row that has produced eos_id is padded with PAD_ID afterwards; sampling ends early
    when every row has finished (eos_id=None: never, every row gets max_new_tokens tokens,
    as far as the context allows). `generator` (a torch.Generator) makes sampling
    reproducible independently of the global RNG. `banned`: token ids whose logits are set
    to -inf before temperature and filtering, so they are never drawn (None: none; the
    random numbers drawn are the same either way).
    """
    was_training = model.training
    model.eval()
    B = idx.size(0)
    done = torch.zeros(B, dtype=torch.bool, device=idx.device)
    cached = use_cache and hasattr(model, "init_cache")
    # stay inside the context: the new tokens plus the prompt must fit
    max_new_tokens = min(max_new_tokens, model.block_size - idx.size(1) + 1) if cached else max_new_tokens
    cache = model.init_cache(B) if cached else None
    banned = torch.as_tensor(list(banned), dtype=torch.long, device=idx.device) if banned else None
    step_input = idx
    for _ in range(max_new_tokens):
        if cached:
            logits, _ = model(step_input, cache=cache)
        else:
            logits, _ = model(idx[:, -model.block_size:])
        logits = logits[:, -1, :].float()
        if banned is not None:
            logits = logits.index_fill(-1, banned, float("-inf"))
        probs = F.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        nxt = nxt.masked_fill(done[:, None], PAD_ID)
        idx = torch.cat([idx, nxt], dim=1)
        step_input = nxt
        if eos_id is not None:
            done |= nxt.squeeze(1) == eos_id
            if bool(done.all()):
                break
    model.train(was_training)
    return idx
