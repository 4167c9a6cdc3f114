"""Checkpoints: written atomically, loaded with weights_only=True, checked on load.

A checkpoint is a plain dict of tensors and primitives, so it loads without
unpickling code:
    model_name, model_config (asdict), model (the unwrapped state_dict), tokenizer
    (vocabulary), train_config, step, best_val, optimizer, rng, and any extras a
    trainer adds (the GAN's discriminator, EMA, ...).
Writing goes to a temporary file in the same directory, is flushed to disk, and then
renamed over the target: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says what differs."""


def unwrap(model):
    """The plain module inside DDP and torch.compile wrappers (never save a wrapper's state_dict)."""
    model = getattr(model, "module", model)        # DistributedDataParallel
    return getattr(model, "_orig_mod", model)      # torch.compile


def save_checkpoint(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); use an earlier checkpoint or retrain") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise CheckpointError(f"{path} is not a TextDuel checkpoint (no model_name/model entries)")
    return ckpt


def check_compatible(ckpt: dict, model_name: str, model_config: dict, vocab: list[str] | None = None) -> None:
    """Refuse to resume into a different model, config or vocabulary, naming what differs."""
    if ckpt["model_name"] != model_name:
        raise CheckpointError(f"checkpoint holds model {ckpt['model_name']!r}, but this run builds {model_name!r}")
    diffs = [f"{k}: checkpoint {ckpt['model_config'].get(k)!r} vs run {v!r}"
             for k, v in model_config.items() if ckpt["model_config"].get(k) != v]
    if diffs:
        raise CheckpointError("checkpoint model config differs from this run's: " + "; ".join(diffs))
    if vocab is not None and ckpt.get("tokenizer", {}).get("itos") != list(vocab):
        old = ckpt.get("tokenizer", {}).get("itos") or []
        raise CheckpointError(f"checkpoint vocabulary ({len(old)} symbols) differs from this dataset's "
                              f"({len(vocab)} symbols); it was trained on other data")
