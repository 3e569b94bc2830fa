"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint is a directory ``<run>/checkpoints/<tag>/`` holding ``model.safetensors``,
``optimizer.safetensors`` and ``state.json``. It is written under a temporary name and
renamed into place in one step, and the ``LATEST`` pointer file is replaced atomically after
that — so a run killed at any moment leaves either the previous checkpoint or the new one,
never half of one. Loading never unpickles: safetensors and JSON only.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
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
    # safetensors creates its file 0600; a run's files are shared like state.json (0666 & ~umask)
    os.chmod(path, 0o666 & ~_umask())


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
        # content hashes of the tensor files, checked on every load: safetensors validates
        # the header, not the data, so flipped bytes inside a tensor would load silently
        state = {**state, "sha256": {n: file_sha256(tmp / n) for n in TENSOR_FILES}}
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
TENSOR_FILES = ("model.safetensors", "extra.safetensors")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_hashes(d: Path, state: dict[str, Any]) -> None:
    """Raise CheckpointError naming a tensor file whose content differs from its recorded
    hash (checkpoints written before hashes were recorded have none and are not checked)."""
    recorded = state.get("sha256")
    if not isinstance(recorded, dict):
        return
    for name, digest in recorded.items():
        if name in TENSOR_FILES and file_sha256(d / name) != digest:
            raise CheckpointError(
                f"checkpoint {d}: {name} is damaged (its content does not match the SHA-256"
                f" recorded when it was written); it will not be loaded. Resume from another"
                f" checkpoint, or retrain")


def read_checkpoint(root: Path, tag: str) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                   dict[str, torch.Tensor]]:
    """Load (model tensors, state, extra tensors) — safetensors and JSON only, no pickle."""
    d = Path(root) / "checkpoints" / tag
    try:
        state = json.loads((d / "state.json").read_text(encoding="utf-8"))
        verify_hashes(d, state)
        model = load_file(str(d / "model.safetensors"))
        extra = load_file(str(d / "extra.safetensors"))
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


#: the random part tempfile gives mkstemp/mkdtemp names (8 of [a-z0-9_])
_RANDOM = r"[a-z0-9_]{8}"
#: names daer's own writes use while in progress (atomic_write_text; write_checkpoint)
TEMP_FILE = re.compile(rf"^\..+\.{_RANDOM}\.tmp$")
TEMP_CHECKPOINT = re.compile(rf"^\.[A-Za-z0-9_.-]+?\.({_RANDOM}|old)$")


def _only_checkpoint_files(d: Path) -> bool:
    """A folder holding nothing but files a checkpoint write creates (and their temps)."""
    try:
        entries = list(d.iterdir())
    except OSError:
        return False
    return all(p.is_file() and (p.name in CHECKPOINT_FILES or TEMP_FILE.match(p.name))
               for p in entries)


def is_checkpoint_dir(d: Path) -> bool:
    """A complete or partial checkpoint folder daer wrote: a name daer gives checkpoints and
    nothing inside but checkpoint files. A user's folder in ``checkpoints/`` is neither."""
    return d.is_dir() and not d.name.startswith(".") and _only_checkpoint_files(d) \
        and any((d / n).is_file() for n in CHECKPOINT_FILES)


def prune_checkpoints(root: Path, keep: set[str]) -> None:
    """Remove checkpoint folders not in ``keep`` — only folders daer wrote as checkpoints."""
    ckdir = Path(root) / "checkpoints"
    for d in ckdir.iterdir() if ckdir.is_dir() else []:
        if d.name not in keep and is_checkpoint_dir(d):
            shutil.rmtree(d, ignore_errors=True)


def remove_partial_writes(root: Path) -> int:
    """Delete what a kill in the middle of one of daer's writes left behind: temporary files
    named as :func:`atomic_write_text` names them, and temporary checkpoint folders named as
    :func:`write_checkpoint` names them that hold only checkpoint files. Anything else —
    ``.git``, ``.ipynb_checkpoints``, a user's backup folder — is never touched, and
    complete checkpoints neither. Returns how many were removed."""
    removed = 0
    root = Path(root)
    for folder in (root, root / "checkpoints"):
        for p in folder.iterdir() if folder.is_dir() else []:
            if p.is_file() and TEMP_FILE.match(p.name):
                p.unlink(missing_ok=True)
                removed += 1
            elif (folder.name == "checkpoints" and p.is_dir() and TEMP_CHECKPOINT.match(p.name)
                  and _only_checkpoint_files(p)):
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
    return removed


def checkpoint_dirs(root: Path) -> list[Path]:
    """Every checkpoint folder of a run (complete or not; temporary ones and folders of the
    user's own excluded)."""
    ckdir = Path(root) / "checkpoints"
    return sorted(d for d in (ckdir.iterdir() if ckdir.is_dir() else []) if is_checkpoint_dir(d))


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


def describe_unresumable(folders: list[Path]) -> str:
    """Why none of ``folders`` can continue a run: the damaged ones (a file missing or its
    state unreadable) apart from the healthy weights-only ones (``best-*``, ``final``),
    which were never meant to continue a run."""
    damaged, weights_only = [], []
    for d in folders:
        missing = [n for n in CHECKPOINT_FILES if not (d / n).is_file()]
        try:
            state = json.loads((d / "state.json").read_text(encoding="utf-8")) \
                if not missing else None
        except (OSError, ValueError):
            state = None
        if missing:
            damaged.append(f"{d.name} ({', '.join(missing)} missing)")
        elif not isinstance(state, dict) or "trainer" not in state:
            damaged.append(f"{d.name} (state.json cannot be read)")
        else:
            weights_only.append(d.name)
    parts = []
    if damaged:
        parts.append("damaged: " + "; ".join(damaged))
    if weights_only:
        parts.append("weights only, which cannot continue a run: " + ", ".join(weights_only))
    return "; ".join(parts) or "none found"


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
