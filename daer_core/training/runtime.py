"""Device choice, seeding and RNG state capture — what makes a run reproducible and resumable."""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from ..precision import bf16_native

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto", key: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; an explicit device must exist.

    ``key`` names where the value came from (a config key or a command-line option), so a
    bad value is a config error naming it rather than torch's own RuntimeError.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from ..errors import ConfigError
    try:
        dev = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{key}: {requested!r} is not a device; use auto, cpu, cuda or"
                          " cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {requested!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}: {requested!r} requested but only "
                          f"{torch.cuda.device_count()} CUDA device(s) exist")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derived_seed(seed: int, *parts: int) -> int:
    """A stable seed for (run seed, stage, epoch, ...) — the same on every machine."""
    x = seed & 0xFFFFFFFF
    for p in parts:
        x = (x * 1_000_003 + int(p) + 0x9E3779B9) & 0xFFFFFFFF
    return x


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """RNG states split into JSON-able parts and tensors (for safetensors)."""
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return meta, tensors


def restore_rng(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["rng.torch"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")),
                       key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        for i, state in enumerate(cuda[:torch.cuda.device_count()]):  # the GPUs still here
            torch.cuda.set_rng_state(state, i)


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    """``train.bf16`` (``auto``, true or false) for ``device``: ``auto`` = where bf16 is
    native (the same test as scoring's ``evaluate.bf16``)."""
    return bf16_native(device) if setting == "auto" else bool(setting)


def resolve_workers(setting: int | str, device: torch.device) -> int:
    """``train.num_workers``: ``auto`` = min(8, cores - 1) on CUDA, where decoding images in
    the main process would starve the GPU; cores // 4 (at most 4) on CPU, where every worker
    takes a core from the forward and backward passes."""
    if setting != "auto":
        return int(setting)
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if device.type == "cuda":
        return max(0, min(8, cores - 1))
    return min(4, cores // 4)


def configure_precision(device: torch.device) -> None:
    """TF32 matrix products and convolutions on CUDA (float32 accuracy is not needed for
    training these models, and TF32 is several times faster on Ampere and newer)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
