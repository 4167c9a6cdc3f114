"""Checkpoints: written atomically, loaded with weights_only=True, checked on load.

A checkpoint is a plain dict of tensors and primitives, so it loads without
unpickling code:
    model_name, model_config (asdict), model (the unwrapped state_dict), tokenizer
    (vocabulary), train_config, step, best_val, optimizer, rng, and any extras a
    trainer adds (the GAN's discriminator, EMA, ...).
Writing goes to a temporary file in the same directory, is flushed to disk, and then
renamed over the target: a crash mid-write leaves the previous checkpoint intact.
Loading checks the archive's CRC-32s first (torch.load does not), so a truncated or
bit-flipped file is an error, never silently wrong weights.
"""

from __future__ import annotations

import json
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


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _remove_abandoned_temporaries(path: Path) -> None:
    """Temporary files beside `path` (.<name>.<pid>.<random>.tmp) whose writer is gone: a writer
    killed mid-write leaves one. Another live writer's file (it is about to rename it) is left alone."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        stale.unlink(missing_ok=True)


def write_atomic(path: str | Path, write) -> None:
    """Call write(binary file) on a temporary file beside `path`, fsync it and rename it over
    `path` (and fsync the directory): the file at `path` is always the previous one or the new
    one, whole, whenever the process dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a results file is for everyone to read
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: str | Path, text: str) -> None:
    """A text file (config.json, metrics.json, a report) written atomically, as UTF-8."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` to `path` atomically (write_atomic): the file at `path` is always either the
    previous checkpoint or the new one, whole. A temporary file left by a writer that was killed
    is removed by the next save of the same path; a live writer's is not."""
    write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint at `path`, or a CheckpointError that says what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (runs/<run_name>/last.pt or best.pt)")
    try:
        # torch.save writes a zip archive with a CRC-32 per record; torch.load does not check them,
        # so a flipped bit in tensor data would load silently as wrong weights
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            raise CheckpointError(f"checkpoint {path} is corrupt: record {bad} fails its CRC check; "
                                  "use an earlier checkpoint or retrain")
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"checkpoint {path} is corrupt and cannot be unpickled ({str(e)[:200]}); "
                                  "use an earlier checkpoint or retrain") from e
        raise CheckpointError(f"{path} holds Python objects that weights_only=True refuses to unpickle, so it was "
                              "not written by save_checkpoint. If you trust its source, load it with "
                              "torch.load(weights_only=False) and re-save its tensors") from None
    except Exception as e:  # zip, pickle and storage errors all mean the bytes are not a whole checkpoint
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read ({type(e).__name__}: "
                              f"{first}); use an earlier checkpoint or retrain") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise CheckpointError(f"{path} is not a TextDuel checkpoint (no model_name/model entries); "
                              "give a last.pt or best.pt written by a TextDuel trainer")
    return ckpt


def load_checkpoint_under(path: str | Path, key: dict) -> dict | None:
    """The checkpoint at `path` when it was stored under `key` (a dict of its settings, compared as
    torch.save keeps it: through JSON, so tuples read back as lists), else None (also where there
    is no file): what a cache of trained things reads before training again."""
    if not Path(path).is_file():
        return None
    stored = load_checkpoint(path)
    return stored if stored.get("key") == json.loads(json.dumps(key)) else None


def load_resume_checkpoint(last_path: str | Path) -> dict:
    """The checkpoint a `--resume true` run continues from, with a clear error when there is none."""
    if not Path(last_path).is_file():
        raise CheckpointError(f"resume=true but there is no {last_path} to continue from; check --out_dir and "
                              "--run_name, or start the run without --resume")
    return load_checkpoint(last_path)


def vocabulary_of(tokenizer_state: dict) -> list[str]:
    """The symbols of a checkpoint's tokenizer, by id (a BPE's are rebuilt from its tokenizer.json)."""
    from datasets.tokenizers import Tokenizer
    return tokenizer_state["itos"] if "itos" in tokenizer_state else Tokenizer.from_state(tokenizer_state).itos


def vocabulary_difference(old: list[str], new: list[str]) -> str:
    """How a checkpoint's vocabulary differs from this dataset's, in a sentence."""
    old_set, new_set = set(old), set(new)
    only_old = [s for s in old if s not in new_set]
    only_new = [s for s in new if s not in old_set]
    detail = (f"symbols only in the checkpoint: {only_old[:10]}; only in this dataset: {only_new[:10]}"
              if only_old or only_new else "the same symbols in a different order")
    return f"checkpoint vocabulary ({len(old)} symbols) differs from this dataset's ({len(new)} symbols): {detail}"


def check_compatible(ckpt: dict, model_name: str, model_config: dict, vocab: list[str] | None = None,
                     data: dict | None = None) -> None:
    """Refuse to resume into a different model, config, vocabulary or dataset, naming what differs.

    `data` holds the run's data settings (e.g. dataset and split), compared with the
    checkpoint's train_config: a corpus with the same vocabulary is still other data."""
    fix = "resume with the checkpoint's settings, or start a new run (another --run_name, or --resume false)"
    if ckpt["model_name"] != model_name:
        raise CheckpointError(f"checkpoint holds model {ckpt['model_name']!r}, but this run builds {model_name!r}; {fix}")
    old = vocabulary_of(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    if vocab is not None and old != list(vocab):
        raise CheckpointError(f"{vocabulary_difference(old or [], vocab)}; {fix}")
    old_data = ckpt.get("train_config", {})
    diffs = [f"{k}: checkpoint {old_data[k]!r} vs run {v!r}" for k, v in (data or {}).items()
             if k in old_data and old_data[k] != v]
    if diffs:
        raise CheckpointError("checkpoint was trained on other data: " + "; ".join(diffs) + f"; {fix}")
    stored = ckpt["model_config"]
    # a setting added after the checkpoint was written is absent from it: it matches an empty or false
    # value, the default every such setting has (so that it changes nothing for older runs)
    diffs = [f"{k}: checkpoint {stored.get(k)!r} vs run {v!r}" for k, v in model_config.items()
             if (stored[k] != v if k in stored else v not in ("", False, None, 0, ()))]
    if diffs:
        raise CheckpointError("checkpoint model config differs from this run's: " + "; ".join(diffs) + f"; {fix}")
