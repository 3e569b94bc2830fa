"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint is a directory ``<run>/checkpoints/<tag>/`` holding ``model.safetensors``,
``optimizer.safetensors`` and ``state.json``. It is written under a temporary name and
renamed into place in one step, and the ``LATEST`` pointer file is replaced atomically after
that — so a run killed at any moment leaves either the previous checkpoint or the new one,
never half of one. Loading never unpickles: safetensors and JSON only.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; run files are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors needs contiguous, non-shared tensors: clone what must be cloned."""
    seen: dict[int, str] = {}
    clean: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = v.detach().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen or not t.is_contiguous():
            t = t.clone().contiguous()
        if ptr is not None:
            seen.setdefault(ptr, k)
        clean[k] = t
    save_file(clean, str(path))


def flatten_optimizer(state: dict, prefix: str = "opt") -> tuple[dict, dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into JSON-able structure and tensors named
    ``<prefix>.<param id>.<key>`` (one prefix per optimizer when a stage has several)."""
    tensors: dict[str, torch.Tensor] = {}
    meta_state: dict[str, dict] = {}
    for pid, pstate in state["state"].items():
        entry = {}
        for key, val in pstate.items():
            if isinstance(val, torch.Tensor):
                name = f"{prefix}.{pid}.{key}"
                tensors[name] = val
                entry[key] = {"__tensor__": name}
            else:
                entry[key] = val
        meta_state[str(pid)] = entry
    return {"state": meta_state, "param_groups": state["param_groups"]}, tensors


def unflatten_optimizer(meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {k: (tensors[v["__tensor__"]] if isinstance(v, dict) and "__tensor__" in v
                               else v) for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def write_checkpoint(root: Path, tag: str, model_tensors: dict[str, torch.Tensor],
                     state: dict[str, Any], extra_tensors: dict[str, torch.Tensor] | None = None
                     ) -> Path:
    """Write ``root/checkpoints/<tag>`` atomically and point ``LATEST`` at it."""
    ckdir = Path(root) / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=ckdir, prefix=f".{tag}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        save_tensors(tmp / "model.safetensors", model_tensors)
        save_tensors(tmp / "extra.safetensors", extra_tensors or {"_": torch.zeros(0)})
        atomic_write_json(tmp / "state.json", state)
        final = ckdir / tag
        if final.exists():
            trash = ckdir / f".{tag}.old"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def set_latest(root: Path, tag: str) -> None:
    atomic_write_text(Path(root) / "checkpoints" / "LATEST", tag + "\n")


def latest_tag(root: Path) -> str | None:
    p = Path(root) / "checkpoints" / "LATEST"
    if not p.is_file():
        return None
    tag = p.read_text().strip()
    return tag or None


#: the files every checkpoint directory holds
CHECKPOINT_FILES = ("model.safetensors", "extra.safetensors", "state.json")


def read_checkpoint(root: Path, tag: str) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                   dict[str, torch.Tensor]]:
    """Load (model tensors, state, extra tensors) — safetensors and JSON only, no pickle."""
    d = Path(root) / "checkpoints" / tag
    try:
        model = load_file(str(d / "model.safetensors"))
        extra = load_file(str(d / "extra.safetensors"))
        state = json.loads((d / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        # safetensors' own FileNotFoundError carries no file name: find it ourselves
        absent = [n for n in CHECKPOINT_FILES if not (d / n).is_file()]
        what = ", ".join(absent) if absent else "a file"
        if not d.is_dir():
            raise CheckpointError(f"checkpoint {d} does not exist") from None
        raise CheckpointError(f"checkpoint {d} is incomplete: {what} is missing") from None
    except (json.JSONDecodeError, OSError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {d} cannot be read: {exc}") from None
    extra.pop("_", None)
    return model, state, extra


def prune_checkpoints(root: Path, keep: set[str]) -> None:
    ckdir = Path(root) / "checkpoints"
    for d in ckdir.iterdir() if ckdir.is_dir() else []:
        if d.is_dir() and d.name not in keep and not d.name.startswith("."):
            shutil.rmtree(d, ignore_errors=True)


def remove_partial_writes(root: Path) -> int:
    """Delete what a kill in the middle of a write left behind (hidden temporary files and
    directories); complete checkpoints are never touched. Returns how many were removed."""
    removed = 0
    for folder in (Path(root), Path(root) / "checkpoints"):
        for p in folder.iterdir() if folder.is_dir() else []:
            if p.name.startswith(".") and (p.name.endswith((".tmp", ".old")) or p.is_dir()):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed += 1
    return removed


def checkpoint_dirs(root: Path) -> list[Path]:
    """Every checkpoint folder of a run (complete or not; temporary ones excluded)."""
    ckdir = Path(root) / "checkpoints"
    return sorted(d for d in (ckdir.iterdir() if ckdir.is_dir() else [])
                  if d.is_dir() and not d.name.startswith("."))


def _resumable_position(d: Path) -> tuple[int, int, int] | None:
    """(finished, stage index, epoch) of a complete, resumable checkpoint; None otherwise.

    Resumable means written by the trainer's per-epoch save: its state holds the RNG states
    (``best-*`` and ``final`` hold weights only and cannot continue a run)."""
    if not all((d / n).is_file() for n in CHECKPOINT_FILES):
        return None
    try:
        state = json.loads((d / "state.json").read_text(encoding="utf-8"))
        trainer = state["trainer"]
        if "rng" not in state:
            return None
        return (int(bool(trainer.get("finished_training"))), int(trainer["stage_index"]),
                int(trainer["epoch"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resume_tag(root: Path) -> tuple[str | None, str | None]:
    """The checkpoint a resume continues from, and why when it is not ``LATEST``.

    ``LATEST`` when it names a complete checkpoint; otherwise (``LATEST`` lost or pointing at
    a damaged folder) the furthest complete resumable checkpoint, so a lost pointer never
    throws away the epochs already trained. ``(None, None)`` when there is none.
    """
    latest = latest_tag(root)
    ckdir = Path(root) / "checkpoints"
    if latest is not None and _resumable_position(ckdir / latest) is not None:
        return latest, None
    found = [(pos, d.name) for d in checkpoint_dirs(root)
             if (pos := _resumable_position(d)) is not None]
    if not found:
        return None, None
    tag = max(found)[1]
    why = ("checkpoints/LATEST is missing" if latest is None else
           f"checkpoints/LATEST names {latest!r}, which is missing or incomplete")
    return tag, why
