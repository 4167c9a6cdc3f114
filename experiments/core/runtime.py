"""Shared run infrastructure: device and precision, seeding, the optimizer and its
learning-rate schedule. Every CUDA-only feature (bf16 autocast, fused AdamW,
torch.compile) is chosen here and falls back cleanly on CPU and MPS.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings

import torch

from experiments.core.config import ConfigError


class DeviceError(ConfigError, RuntimeError):
    """A device asked for that this machine lacks (a setting to change, so a ConfigError)."""


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA, then MPS, then CPU. An explicit device that is absent is an error, not a silent fallback."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={name!r} but CUDA is not available here; use device=auto or device=cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device={name!r} but MPS is not available here; use device=auto or device=cpu")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The precision a run computes in: 'auto' -> bf16 autocast on CUDA devices that support it,
    else fp32. Mixed precision is CUDA-only here, so asking for bf16/fp16 elsewhere gives fp32
    with a warning (the run goes on; the returned dtype is the one actually used)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {name!r}")
    if table[name] != torch.float32 and device.type != "cuda":
        warnings.warn(f"dtype={name} ignored on {device.type}: autocast is used on CUDA only; computing in float32",
                      stacklevel=2)
        return torch.float32
    return table[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision where it helps (CUDA bf16/fp16); a no-op context in fp32."""
    if dtype == torch.float32 or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_optimizer(model, lr, weight_decay, betas, device, fused: bool | None = None):
    """AdamW with weight decay on 2-D weights (matmuls, embeddings) only: biases and
    LayerNorm gains are not decayed (as in GPT-2 / nanoGPT). The fused kernel is used on
    CUDA (fused=None: auto; False turns it off, e.g. to measure its effect)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" and fused is not False else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **extra)


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup, then cosine decay from lr to min_lr at max_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def maybe_compile(model, enabled: bool, device: torch.device):
    """torch.compile on CUDA when asked; elsewhere the eager model (compile gains little on CPU
    and needs a C++ toolchain). Checkpoints always save the uncompiled module."""
    if enabled and device.type == "cuda":
        return torch.compile(model)
    if enabled:
        warnings.warn(f"compile=true ignored on {device.type}: torch.compile is used on CUDA only; running eager",
                      stacklevel=2)
    return model


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Settings a run's random numbers and float reductions depend on: changed on resume, the run
# goes on, but it is no longer bit-identical to the uninterrupted one.
EXACTNESS_SETTINGS = ("seed", "batch_size", "grad_accum", "n_critic", "dtype", "device")


def environment(dist) -> dict:
    """What else bitwise exactness depends on: torch's thread count (the order of float
    reductions), the world size, the device type. Stored in every last.pt."""
    return {"threads": torch.get_num_threads(), "world": dist.world, "device_type": dist.device.type}


def resume_changes(saved_config: dict, cfg, saved_env: dict | None, env: dict) -> tuple[list[str], list[str]]:
    """(settings changed since the checkpoint, those of them and of the environment that break
    bitwise exactness), as 'name old -> new'."""
    changed = [f"{k} {v!r} -> {getattr(cfg, k)!r}" for k, v in saved_config.items()
               if k not in ("resume", "progress") and hasattr(cfg, k) and getattr(cfg, k) != v]
    breaking = [c for c in changed if c.split(" ", 1)[0] in EXACTNESS_SETTINGS]
    breaking += [f"{k} {v!r} -> {env[k]!r}" for k, v in (saved_env or {}).items() if k in env and env[k] != v]
    return changed, breaking


def say_resume_changes(saved_config: dict, cfg, saved_env: dict | None, env: dict) -> None:
    changed, breaking = resume_changes(saved_config, cfg, saved_env, env)
    if changed:  # allowed (e.g. a longer max_steps), but the run is no longer the uninterrupted one
        print("settings changed since the checkpoint: " + ", ".join(changed))
    if breaking:
        print("resume will not be bit-identical to the uninterrupted run: " + ", ".join(breaking))


class Distributed:
    """torchrun's process group, or a single process. NCCL on CUDA, gloo on CPU.

    Under torchrun (RANK, LOCAL_RANK, WORLD_SIZE set) every process joins the group and
    uses its own GPU (cuda:LOCAL_RANK) when CUDA is present. Only rank 0 writes logs,
    samples and checkpoints (`is_main`).
    """

    def __init__(self, device_name: str = "auto"):
        import os
        self.enabled = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        device = resolve_device(device_name)
        if self.enabled:
            import torch.distributed as dist
            if device.type == "cuda":
                device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (e.g. a wall-clock budget ran out somewhere)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def wrap(self, model):
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP
        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def close(self):
        if self.enabled:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
