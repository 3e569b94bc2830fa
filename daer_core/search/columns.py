"""Each side's rows as memory-mapped column files, so a large index opens in seconds and
serves from a few pages of RAM.

The shards (:mod:`.storage`) are the index's record: written one at a time, resumable. Reading
every shard into memory on open is fine for 10^4 items and not for 10^6 (seconds per 10^5 rows,
and the whole embedding matrix resident). After each job completes, the shards of every
complete job are consolidated, per side, into::

    columns/{side}-embedding.npy   float32 (rows, D)      opened with numpy mmap
    columns/{side}-half.npy        float32 (rows, H)      (models whose head splits)
    columns/{side}-meta.jsonl      one JSON object per row (id, text, path, labels, job, ...)
    columns/{side}-meta.offsets.npy  int64 byte offset of each line (+ the end)

written under temporary names and moved into place, then recorded in ``index.json``
(``columns``: the jobs they hold). Searching reads only the candidates' rows and the hits'
metadata lines; pages the OS loaded are file cache, reclaimable, not the process's own memory.
An index whose columns are missing or behind its jobs (an older index, an interrupted write)
is opened from the shards as before, and ``daer index`` writes them again.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .scoring import SIDES, PairScorer
from .storage import SideData, complete_jobs, read_shard

FOLDER = "columns"


def _paths(root: Path, side: str) -> dict[str, Path]:
    base = Path(root) / FOLDER
    return {"embedding": base / f"{side}-embedding.npy", "half": base / f"{side}-half.npy",
            "meta": base / f"{side}-meta.jsonl", "offsets": base / f"{side}-meta.offsets.npy"}


class LazyMeta:
    """Row metadata read from the JSON-lines column on demand (a list's ``len``, indexing
    and iteration), so 10^6 items' metadata never sit in memory as Python objects."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self.path = Path(path)
        self.offsets = offsets
        self._fh = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _file(self):
        if self._fh is None:
            self._fh = self.path.open("rb")
        return self._fh

    def __getitem__(self, row: int) -> dict[str, Any]:
        row = int(row)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        # a positional read: threads (the service's thumbnails beside a search) share the file
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return json.loads(os.pread(self._file().fileno(), end - start, start))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as fh:
            for line in fh:
                yield json.loads(line)

    def __getstate__(self):  # an open file cannot travel; it is reopened on first use
        return {"path": self.path, "offsets": self.offsets, "_fh": None}


def current(info: dict[str, Any]) -> bool:
    """Whether ``index.json`` says the columns hold exactly its complete jobs."""
    done = [j["job"] for j in complete_jobs(info)]
    return bool(done) and info.get("columns", {}).get("jobs") == done


def _shard_rows(root: Path, job: dict[str, Any], side: str
                ) -> Iterator[tuple[np.ndarray, np.ndarray | None, list[bytes]]]:
    """Per shard of ``job``: the side's embeddings, halves (or None) and metadata lines."""
    for shard in range(job["shards"]):
        data = read_shard(root, job["job"], shard)
        pos = data[f"{side}_pos"]
        if not len(pos):
            continue
        lines = [json.dumps({**data["items"][int(p)], "job": job["job"],
                             "position": shard * job["shard_size"] + int(p)}
                            ).encode("utf-8") + b"\n" for p in pos]
        yield data[f"{side}_embedding"], data.get(f"{side}_half"), lines


def _widths(scorer: PairScorer, side: str) -> dict[str, int]:
    """The float32 column files of a side and their widths."""
    widths = {"embedding": scorer.dim(side)}
    if scorer.splits:
        widths["half"] = scorer.hidden_dim
    return widths


def damaged(root: Path, info: dict[str, Any], scorer: PairScorer) -> str | None:
    """What is wrong with the column files ``index.json`` records (a file missing, torn, or
    of another row count than recorded), or None when they are intact."""
    counts = info.get("columns", {}).get("counts") or {}
    for side in SIDES:
        paths = _paths(root, side)
        widths = _widths(scorer, side)
        for key, width in widths.items():
            have = _npy_rows(paths[key], width)
            if have is None or have[0] != counts.get(side):
                return f"column file {paths[key].name} is missing, damaged or not as recorded"
        try:
            offsets = np.load(paths["offsets"])
        except (OSError, ValueError):
            return f"column file {paths['offsets'].name} is missing or damaged"
        if (len(offsets) != counts.get(side, -1) + 1 or not paths["meta"].is_file()
                or paths["meta"].stat().st_size != int(offsets[-1])):
            return f"column file {paths['meta'].name} is missing or not as recorded"
    return None


def write(root: Path, info: dict[str, Any], scorer: PairScorer) -> dict[str, Any]:
    """Bring the column files up to every complete job and return the ``columns`` entry for
    ``index.json``. When the columns already hold the earlier jobs (an ``index add``), the
    new jobs' rows are appended in place (:func:`_append`): the cost is the new rows', not the
    index's. Otherwise every shard is consolidated anew, atomically, one file at a time (readers
    of ``index.json`` only trust the files once it records them)."""
    root = Path(root)
    jobs = complete_jobs(info)
    held = info.get("columns", {}).get("jobs") or []
    done = [j["job"] for j in jobs]
    if held and done[:len(held)] == held and len(done) > len(held):
        counts = _append(root, info, scorer, [j for j in jobs if j["job"] not in held])
        if counts is not None:
            return {"jobs": done, "counts": counts}
    return _rewrite(root, jobs, scorer)


def _rewrite(root: Path, jobs: list[dict[str, Any]], scorer: PairScorer) -> dict[str, Any]:
    (root / FOLDER).mkdir(exist_ok=True)
    counts = {side: 0 for side in SIDES}
    for job in jobs:  # a first pass for the sizes, so the arrays are written in place
        for shard in range(job["shards"]):
            data = read_shard(root, job["job"], shard)
            for side in SIDES:
                counts[side] += len(data[f"{side}_pos"])
    for side in SIDES:
        paths = _paths(root, side)
        tmp = {k: p.with_name(p.name + ".tmp") for k, p in paths.items()}
        emb = _new_array(tmp["embedding"], (counts[side], scorer.dim(side)))
        half = (_new_array(tmp["half"], (counts[side], scorer.hidden_dim))
                if scorer.splits else None)
        offsets = [0]
        row = 0
        with tmp["meta"].open("wb") as meta:
            for job in jobs:
                for e, h, lines in _shard_rows(root, job, side):
                    n = len(lines)
                    emb[row:row + n] = e
                    if half is not None:
                        half[row:row + n] = h
                    for line in lines:
                        meta.write(line)
                        offsets.append(offsets[-1] + len(line))
                    row += n
            meta.flush()
            os.fsync(meta.fileno())
        for array in (emb, half):
            if isinstance(array, np.memmap):
                array.flush()
        del emb, half
        with tmp["offsets"].open("wb") as fh:  # (a path not ending in .npy would get one)
            np.save(fh, np.asarray(offsets, dtype=np.int64))
        for key in ("embedding", "half", "meta", "offsets"):
            if tmp[key].exists():
                os.replace(tmp[key], paths[key])
        if not scorer.splits and paths["half"].exists():
            paths["half"].unlink()
    return {"jobs": [j["job"] for j in jobs], "counts": counts}


def _npy_rows(path: Path, width: int) -> tuple[int, int] | None:
    """``(rows, header bytes)`` of a float32 C-order ``(rows, width)`` .npy file whose size
    is exactly that, or None (anything else is rewritten, not appended to)."""
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                return None
            shape, fortran, dtype = read(fh)
        except ValueError:
            return None
        start = fh.tell()
    if (fortran or dtype != np.float32 or len(shape) != 2 or shape[1] != width
            or path.stat().st_size != start + shape[0] * width * 4):
        return None
    return int(shape[0]), start


def _npy_header(rows: int, width: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (rows, width)})
    return buf.getvalue()


def _append(root: Path, info: dict[str, Any], scorer: PairScorer,
            new_jobs: list[dict[str, Any]]) -> dict[str, int] | None:
    """Append ``new_jobs``' rows to the column files the index records, in place: the rows
    go after the existing ones, then the .npy headers are rewritten with the new row count
    (numpy leaves room in a header for its first axis to grow), the metadata lines are
    appended and the offsets file is replaced. A reader that mapped the files before sees
    its own rows unchanged; one that opens them before ``index.json`` records the new jobs
    finds the columns behind the jobs and reads the shards, and an interrupted append is
    repaired by the next write, which rewrites everything. Returns the new counts, or None
    when the files are not as recorded (then everything is rewritten)."""
    if damaged(root, info, scorer):
        return None
    plan = {}
    for side in SIDES:
        paths = _paths(root, side)
        widths = _widths(scorer, side)
        for key, width in widths.items():
            rows, start = _npy_rows(paths[key], width)
            if len(_npy_header(rows, width)) != start:   # no room to grow: rewrite
                return None
        plan[side] = (paths, widths, np.load(paths["offsets"]))
    counts = {}
    for side, (paths, widths, offsets) in plan.items():
        rows = len(offsets) - 1
        ends = list(offsets)
        files = {k: paths[k].open("r+b") for k in widths}
        try:
            for fh in files.values():
                fh.seek(0, os.SEEK_END)
            with paths["meta"].open("ab") as meta:
                for job in new_jobs:
                    for e, h, lines in _shard_rows(root, job, side):
                        files["embedding"].write(np.ascontiguousarray(e, np.float32).tobytes())
                        if "half" in files:
                            files["half"].write(np.ascontiguousarray(h, np.float32).tobytes())
                        for line in lines:
                            meta.write(line)
                            ends.append(ends[-1] + len(line))
                        rows += len(lines)
                meta.flush()
                os.fsync(meta.fileno())
            for key, fh in files.items():
                header = _npy_header(rows, widths[key])
                fh.flush()
                fh.seek(0)
                fh.write(header)
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            for fh in files.values():
                fh.close()
        tmp = paths["offsets"].with_name(paths["offsets"].name + ".tmp")
        with tmp.open("wb") as fh:
            np.save(fh, np.asarray(ends, dtype=np.int64))
        os.replace(tmp, paths["offsets"])
        counts[side] = rows
    return counts


def _new_array(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A float32 ``.npy`` file of ``shape`` to fill in place (an empty one is written whole:
    a zero-length file cannot be mapped)."""
    if shape[0] == 0:
        with path.open("wb") as fh:
            np.save(fh, np.zeros(shape, dtype=np.float32))
        return np.zeros(shape, dtype=np.float32)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


def read(root: Path, scorer: PairScorer, *, mmap: bool = True) -> dict[str, SideData]:
    """Every side's rows from the column files: memory-mapped (``mmap``), or read into memory
    (the same numbers; what an index in RAM holds)."""
    out = {}
    for side in SIDES:
        paths = _paths(root, side)
        offsets = np.load(paths["offsets"])
        mode = "r" if mmap and len(offsets) > 1 else None   # (an empty array has no pages)
        emb = np.load(paths["embedding"], mmap_mode=mode)
        half = np.load(paths["half"], mmap_mode=mode) if scorer.splits else None
        meta: Any = LazyMeta(paths["meta"], offsets)
        if not mmap:
            meta = list(meta)
        out[side] = SideData(_tensor(emb), None if half is None else _tensor(half), meta)
    return out


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over the array's memory (a read-only map stays read-only: nothing writes)."""
    if isinstance(array, np.memmap) and not array.flags.writeable:
        import warnings
        with warnings.catch_warnings():  # torch warns about non-writable arrays it will not write
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array)
    return torch.from_numpy(np.ascontiguousarray(array))
