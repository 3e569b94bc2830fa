"""How a gallery index is kept on disk: its files, the atomic writes, the shards and
``index.json``, and the fingerprints that tie an index to its run and a job to its items.

Layout of an index folder::

    index.json            schema, the run it belongs to (path + weights fingerprint),
                          first-stage method, ANN settings per side, the jobs, item counts
    first_stage.npz       what the first stage learned (see first_stage/)
    shards/jJJJ-sSSSSS.npz  one shard of one job: raw embeddings and halves of both sides,
                          item metadata as JSON (written atomically; present = done)
    text.faiss, image.faiss  the first-stage ANN index of each side

What the index does with them (opening, adding a source, re-indexing): :mod:`.index`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..errors import DaerError
from .scoring import SIDES, PairScorer

if TYPE_CHECKING:
    from .gallery import GalleryItem

SCHEMA = "daer.search-index/1"
INFO_FILE = "index.json"


class SearchIndexError(DaerError):
    """An index folder that is missing, incomplete, or belongs to another model."""


def weights_fingerprint(run_dir: Path) -> str:
    """sha256 over the files of ``checkpoints/final``: an index is only valid for the exact
    weights it was embedded with, and a retrained run in the same folder must be noticed."""
    final = Path(run_dir) / "checkpoints" / "final"
    if not final.is_dir():
        raise SearchIndexError(f"{run_dir}: no checkpoints/final (training has not finished)")
    h = hashlib.sha256()
    for f in sorted(final.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def ids_digest(items: Sequence[GalleryItem]) -> str:
    """sha256 over a job's item ids, in order: a resumed job must list the same items."""
    h = hashlib.sha256()
    for it in items:
        h.update(it.id.encode())
        h.update(b"\0")
    return h.hexdigest()


def atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_info(root: Path, info: dict[str, Any]) -> None:
    """Replace ``index.json`` (atomically)."""
    atomic_json(root / INFO_FILE, info)


def read_info(root: Path) -> dict[str, Any]:
    """``index.json`` of the index at ``root``, checked to be one of this schema."""
    path = root / INFO_FILE
    if not path.is_file():
        raise SearchIndexError(f"{root}: not a gallery index (index.json missing); build"
                               f" one with `daer index RUN --gallery ... --out {root}`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SearchIndexError(f"{path}: unreadable: {exc}") from None
    if info.get("schema") != SCHEMA:
        raise SearchIndexError(f"{path}: schema {info.get('schema')!r}, expected {SCHEMA!r}")
    return info


def complete_jobs(info: dict[str, Any]) -> list[dict[str, Any]]:
    return [j for j in info["jobs"] if j.get("complete")]


def shard_path(root: Path, job: int, shard: int) -> Path:
    return root / "shards" / f"j{job:03d}-s{shard:05d}.npz"


def read_shard(root: Path, job: int, shard: int) -> dict[str, Any]:
    """The arrays of one shard, with its item metadata decoded as ``items``."""
    path = shard_path(root, job, shard)
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
        data["items"] = json.loads(data.pop("meta").tobytes().decode("utf-8"))
    except FileNotFoundError:
        raise SearchIndexError(f"{path}: shard missing from a finished job; rebuild the"
                               f" index") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SearchIndexError(f"{path}: unreadable shard: {exc}") from None
    return data


def shard_sides(scorer: PairScorer, got) -> dict[str, tuple[np.ndarray, np.ndarray,
                                                            np.ndarray | None]]:
    """Per side, what :func:`write_shard` stores for the result ``got`` of
    :func:`~.embedding.embed_items`: positions, float32 embeddings and, when the model
    splits, the relation head's halves."""
    sides = {}
    for side in SIDES:
        pos = got.image_pos if side == "image" else got.text_pos
        emb = got.image if side == "image" else got.text
        if emb is None:
            emb = torch.zeros(0, scorer.dim(side))
        half = None
        if scorer.splits:
            device = next(scorer.model.parameters()).device
            half = scorer.halves(side, emb.to(device)).float().cpu().numpy()
        sides[side] = (np.asarray(pos, dtype=np.int64), emb.numpy().astype(np.float32), half)
    return sides


def write_shard(root: Path, job: int, shard: int,
                sides: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                skipped: Sequence[tuple[int, str]], items: list[dict[str, Any]]) -> None:
    """Write one shard atomically (present = done). ``sides``: per side, the positions in the
    shard of the items that have it, their embeddings and halves (None: the model does not
    split); ``skipped``: (position, reason) of images that did not embed; ``items``: the
    metadata of every item of the shard."""
    arrays: dict[str, np.ndarray] = {}
    for side, (pos, emb, half) in sides.items():
        arrays[f"{side}_pos"] = pos
        arrays[f"{side}_embedding"] = emb
        if half is not None:
            arrays[f"{side}_half"] = half
    arrays["skipped_pos"] = np.asarray([p for p, _ in skipped], dtype=np.int64)
    arrays["skipped_reason"] = np.frombuffer(
        json.dumps([r for _, r in skipped]).encode("utf-8"), dtype=np.uint8)
    arrays["meta"] = np.frombuffer(json.dumps(items).encode("utf-8"), dtype=np.uint8)
    path = shard_path(root, job, shard)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@dataclass
class SideData:
    """Everything stored about one side, in row order."""

    embedding: torch.Tensor
    half: torch.Tensor | None
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.meta)


def read_sides(root: Path, info: dict[str, Any], scorer: PairScorer) -> dict[str, SideData]:
    """Every side's rows from the shards of every complete job, in job, shard, item order."""
    emb: dict[str, list[torch.Tensor]] = {s: [] for s in SIDES}
    half: dict[str, list[torch.Tensor]] = {s: [] for s in SIDES}
    meta: dict[str, list[dict]] = {s: [] for s in SIDES}
    for job in complete_jobs(info):
        for shard in range(job["shards"]):
            data = read_shard(root, job["job"], shard)
            for side in SIDES:
                rows = data[f"{side}_pos"]
                if len(rows) == 0:
                    continue
                emb[side].append(torch.from_numpy(data[f"{side}_embedding"]))
                if scorer.splits:
                    half[side].append(torch.from_numpy(data[f"{side}_half"]))
                items = data["items"]
                meta[side].extend({**items[int(p)], "job": job["job"],
                                   "position": shard * job["shard_size"] + int(p)}
                                  for p in rows)
    out = {}
    for side in SIDES:
        e = torch.cat(emb[side]) if emb[side] else torch.zeros(0, scorer.dim(side))
        h = None
        if scorer.splits:
            h = torch.cat(half[side]) if half[side] else torch.zeros(0, scorer.hidden_dim)
        out[side] = SideData(e, h, meta[side])
    return out
