"""Removing items from an index without a rebuild: tombstones per side row.

FAISS cannot take rows out of a flat index without renumbering the rest, and an IVF or HNSW
removal still leaves the shards, columns and row numbers to keep in step. So a removal only
records the rows in ``index.json`` (``removed: {side: [rows]}``); the searcher asks FAISS for
as many more candidates as there are tombstones and drops them, exhaustive search skips them,
counts leave them out, and an id removed may be added again with another gallery.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .scoring import SIDES
from .storage import write_info


def removed_rows(info: dict[str, Any], side: str) -> np.ndarray:
    """Sorted rows of ``side`` removed from the index (kept on disk, never returned)."""
    return np.asarray(info.get("removed", {}).get(side, []), dtype=np.int64)


def remove_ids(index, ids: Sequence[str]) -> dict[str, Any]:
    """Record the rows of these ids as removed and write ``index.json``; returns the rows
    newly removed per side and the ids the index does not hold (removing twice is
    harmless)."""
    wanted = set(ids)
    removed = index.info.setdefault("removed", {})
    found: set[str] = set()
    newly = {side: 0 for side in SIDES}
    for side in SIDES:
        rows = set(removed.get(side, []))
        for row, meta in enumerate(index.sides[side].meta):
            if meta["id"] in wanted:
                found.add(meta["id"])
                if row not in rows:
                    rows.add(row)
                    newly[side] += 1
        removed[side] = sorted(rows)
    write_info(index.root, index.info)
    return {"removed": newly, "unknown": sorted(wanted - found)}
