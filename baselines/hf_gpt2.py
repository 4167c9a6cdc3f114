"""Hugging Face GPT-2 checkpoints into and out of baselines/gpt2.py, without `transformers`.

A Hugging Face GPT-2 folder holds `config.json`, the weights (`model.safetensors`, or an older
`pytorch_model.bin`) and the tokenizer's files (`vocab.json` + `merges.txt`, and/or
`tokenizer.json`). `load_hf(folder)` gives TextDuel's GPT and its byte-level BPE
(datasets/bpe.py); `save_hf(model, tokenizer, folder)` writes a folder that
`GPT2LMHeadModel.from_pretrained` and `AutoTokenizer.from_pretrained` load.

Names. Hugging Face's `GPT2LMHeadModel` uses the names of baselines/gpt2.py (`transformer.h.0
.attn.c_attn.weight`, ...; a checkpoint of the bare `GPT2Model`, like the hub's `gpt2`, lacks
the `transformer.` prefix). Its `Conv1D` layers store (in, out) weights, so c_attn, c_proj
and c_fc are transposed both ways. The attention-mask buffers of older checkpoints
(`attn.bias`, `attn.masked_bias`) are dropped; the output head is the token embedding
(`tie_word_embeddings`), saved once, since safetensors refuses tensors that share memory.

Ids (the choice between per-tokenizer special ids and a shift): every TextDuel vocabulary
starts with <pad>, <bos>, <eos>, <unk> at 0-3 and the code imports those constants, so GPT-2's
ids are shifted by four (TextDuel id = GPT-2 id + 4, as datasets/bpe.py does for any BPE).
GPT-2 has one special token, <|endoftext|> (the last id, 50256), which starts and ends its
texts. On import its embedding row goes to <eos> (and stays at its shifted place, 50260,
where it is the text "<|endoftext|>", which `encode` never produces); the model reads
<bos> with <eos>'s row (GPTConfig.bos_as_eos), so it starts as GPT-2 starts; and <pad>,
<bos>, <unk> and 50260 are never predicted (GPTConfig.never_predict: logits -inf). GPT-2's
next-token distribution over its 50,257 ids is then exactly this model's over the ids
4..50259 and <eos> (tests/test_hf_gpt2.py, against `transformers`, to 1e-5). Export undoes
the shift and writes <eos>'s row as <|endoftext|>'s: import, export, import round-trips
exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from baselines.gpt2 import GPT, GPTConfig
from datasets.bpe import GPT2_FILES, N_SPECIALS, TOKENIZER_FILE, BPETokenizer
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
EOT = "<|endoftext|>"


class HFCheckpointError(ValueError):
    """A Hugging Face folder this module cannot read as a GPT-2; the message names what differs."""


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise HFCheckpointError(f"{folder} has no config.json: give a Hugging Face GPT-2 folder (config.json, "
                                f"model.safetensors or pytorch_model.bin, {' + '.join(GPT2_FILES)} or "
                                f"{TOKENIZER_FILE})")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    if cfg.get("model_type", "gpt2") != "gpt2":
        problems.append(f"model_type {cfg.get('model_type')!r} (expected 'gpt2')")
    if cfg.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        problems.append(f"activation_function {cfg['activation_function']!r} (baselines/gpt2.py has GELU, tanh form)")
    if cfg.get("n_inner") not in (None, 4 * cfg["n_embd"]):
        problems.append(f"n_inner {cfg['n_inner']} (baselines/gpt2.py's MLP is 4 x n_embd)")
    if abs(cfg.get("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
        problems.append(f"layer_norm_epsilon {cfg['layer_norm_epsilon']} (baselines/gpt2.py's is 1e-5)")
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if cfg.get(flag):
            problems.append(f"{flag} true")
    if not cfg.get("scale_attn_weights", True):
        problems.append("scale_attn_weights false")
    if not cfg.get("tie_word_embeddings", True):
        problems.append("tie_word_embeddings false (baselines/gpt2.py ties the output head to the embedding)")
    if problems:
        raise HFCheckpointError(f"{folder}/config.json is not a GPT-2 this project can load: " + "; ".join(problems))
    return cfg


def _weights(folder: Path) -> dict:
    """The folder's state dict, Hugging Face's names without the `transformer.` prefix."""
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file
        sd = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise HFCheckpointError(f"{folder} has neither model.safetensors nor pytorch_model.bin")
    return {k.removeprefix("transformer."): v for k, v in sd.items()
            if not k.endswith((".attn.bias", ".attn.masked_bias"))}


def load_hf(folder, block_size: int = 0, dropout: float = 0.0) -> tuple[GPT, BPETokenizer]:
    """(TextDuel's GPT, its BPE) from a Hugging Face GPT-2 folder (the module docstring). block_size:
    the context to keep (the first block_size rows of the position table; 0 = all n_positions)."""
    folder = Path(folder)
    cfg = _config(folder)
    tokenizer = BPETokenizer.load_any(folder)
    V = cfg["vocab_size"]
    eot = cfg.get("eos_token_id", V - 1)
    if tokenizer.vocab_size != V + N_SPECIALS or tokenizer.itos[eot + N_SPECIALS] != EOT or eot != V - 1:
        raise HFCheckpointError(f"{folder}: the tokenizer ({tokenizer.vocab_size - N_SPECIALS} symbols) does not fit "
                                f"the model's vocabulary ({V}, {EOT} last): give the folder of one GPT-2")
    n_positions = cfg.get("n_positions", cfg.get("n_ctx"))
    if block_size > n_positions:
        raise HFCheckpointError(f"block_size {block_size} exceeds the checkpoint's {n_positions} positions")
    block = block_size or n_positions
    config = GPTConfig(vocab_size=V + N_SPECIALS, block_size=block, n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                       n_embd=cfg["n_embd"], dropout=dropout, bias=True, bos_as_eos=True,
                       never_predict=",".join(map(str, (PAD_ID, BOS_ID, UNK_ID, eot + N_SPECIALS))))
    sd = _weights(folder)
    wte = sd.pop("wte.weight")
    if wte.shape != (V, cfg["n_embd"]):
        raise HFCheckpointError(f"{folder}: wte is {tuple(wte.shape)}, config.json says ({V}, {cfg['n_embd']})")
    ours = torch.zeros(V + N_SPECIALS, cfg["n_embd"], dtype=torch.float32)
    ours[N_SPECIALS:] = wte.float()
    ours[BOS_ID] = ours[EOS_ID] = wte[eot].float()
    state = {"transformer.wte.weight": ours, "lm_head.weight": ours,
             "transformer.wpe.weight": sd.pop("wpe.weight")[:block].float()}
    head = sd.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, wte):
        raise HFCheckpointError(f"{folder}: lm_head.weight differs from wte.weight: an untied GPT-2 cannot be loaded")
    for k, v in sd.items():
        state[f"transformer.{k}"] = (v.t() if k.endswith(CONV1D) else v).float().contiguous()
    model = GPT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HFCheckpointError(f"{folder}: the weights do not map onto baselines/gpt2.py (missing {missing[:4]}, "
                                f"unexpected {unexpected[:4]})")
    return model, tokenizer


def hf_state_dict(model: GPT) -> dict:
    """The model's weights under Hugging Face's GPT2LMHeadModel names and layout (Conv1D weights
    (in, out); the vocabulary shifted back, <eos>'s row as <|endoftext|>'s; the embedding once)."""
    config = model.config
    if not config.bos_as_eos:
        raise HFCheckpointError("this GPT reads <bos> with a row of its own, which GPT-2's one <|endoftext|> "
                                "cannot hold: only a GPT-2 that reads <bos> as <eos> (bos_as_eos, set by --hf_init) "
                                "exports exactly")
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    wte = sd.pop("transformer.wte.weight")[N_SPECIALS:].clone()
    wte[-1] = model.transformer.wte.weight[EOS_ID].detach().float().cpu()
    out = {"transformer.wte.weight": wte}
    for k, v in sd.items():
        out[k] = (v.t() if k.endswith(CONV1D) else v).contiguous()
    return out


def save_hf(model: GPT, tokenizer: BPETokenizer, folder) -> Path:
    """Write a Hugging Face GPT-2 folder: config.json, model.safetensors, vocab.json + merges.txt,
    tokenizer.json and the tokenizer's config files."""
    from safetensors.torch import save_file
    folder = Path(folder)
    weights = hf_state_dict(model)  # refuses first, before anything is written
    itos = tokenizer.itos[N_SPECIALS:]
    if itos[-1] != EOT or len(itos) != model.config.vocab_size - N_SPECIALS:
        raise HFCheckpointError(f"the tokenizer's last symbol is {itos[-1]!r}, not {EOT}: only a GPT-2 vocabulary "
                                "(a model loaded by --hf_init) exports")
    folder.mkdir(parents=True, exist_ok=True)
    c = model.config
    eot = len(itos) - 1
    hf_config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": len(itos),
                 "n_positions": c.block_size, "n_ctx": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer,
                 "n_head": c.n_head, "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": c.dropout,
                 "embd_pdrop": c.dropout, "attn_pdrop": c.dropout, "layer_norm_epsilon": 1e-5,
                 "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True,
                 "bos_token_id": eot, "eos_token_id": eot, "tie_word_embeddings": True}
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer._hf.model.save(str(folder))  # vocab.json + merges.txt
    spec = json.loads(tokenizer.to_json())
    spec["added_tokens"] = [{"id": eot, "content": EOT, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": True, "special": True}]
    (folder / TOKENIZER_FILE).write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": c.block_size, "bos_token": EOT, "eos_token": EOT,
        "unk_token": EOT, "add_prefix_space": False}, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}, indent=2) + "\n", encoding="utf-8")
    return folder
