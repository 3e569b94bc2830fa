"""The approximate-nearest-neighbour structure of one gallery side (FAISS, inner product).

``flat`` is exact maximum-inner-product search over the first-stage vectors — cheap enough up
to about 10^5 items (tens of MFLOP per query). Beyond that ``auto`` picks ``ivf`` (an inverted
file with ``4 sqrt(N)`` k-means lists, of which ``nprobe`` are visited); ``hnsw`` (a graph,
no training) is available by name. Row ``j`` of the FAISS index is item ``j`` of the side, in
the order items were added, so adding items appends rows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

KINDS: tuple[str, ...] = ("auto", "flat", "ivf", "hnsw")
#: up to this many items ``auto`` keeps the exact flat index
FLAT_LIMIT = 100_000


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError("gallery indexes need faiss-cpu: pip install -e '.[search]'") from None
    return faiss


@dataclass
class AnnSettings:
    """How a side's FAISS index is built and searched (stored in ``index.json``)."""

    kind: str = "flat"
    nlist: int = 0           # ivf: number of k-means lists
    nprobe: int = 0          # ivf: lists visited per query
    hnsw_m: int = 32         # hnsw: neighbours per node
    ef_search: int = 128     # hnsw: search breadth (raised to the candidate count)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnnSettings":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def choose_settings(requested: str, count: int, *, nlist: int | None = None,
                    nprobe: int | None = None) -> AnnSettings:
    """Settings for ``count`` items: ``auto`` is flat up to :data:`FLAT_LIMIT`, then IVF."""
    if requested not in KINDS:
        raise ConfigError(f"unknown index type {requested!r}; choose one of {', '.join(KINDS)}")
    kind = requested
    if kind == "auto":
        kind = "flat" if count <= FLAT_LIMIT else "ivf"
    if kind == "ivf":
        lists = nlist or max(1, int(4 * math.sqrt(max(count, 1))))
        lists = max(1, min(lists, count // 39 or 1))  # FAISS wants ~39 training points a list
        return AnnSettings("ivf", nlist=lists, nprobe=nprobe or min(lists, max(8, lists // 8), 64))
    return AnnSettings(kind)


def build(settings: AnnSettings, vectors: np.ndarray):
    """A new FAISS index over ``vectors`` (IVF is trained on them first)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    d = vectors.shape[1]
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif settings.kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, settings.nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = settings.nprobe
    elif settings.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        raise ConfigError(f"unknown index type {settings.kind!r}")
    if len(vectors):
        index.add(vectors)
    return index


def add(index, vectors: np.ndarray) -> None:
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def save(index, path: Path) -> None:
    """Write atomically: a crash leaves the previous file or the new one, never half of one."""
    faiss = _faiss()
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(path)


def load(path: Path, settings: AnnSettings):
    faiss = _faiss()
    if not path.is_file():
        raise DataError(f"{path}: the FAISS index file is missing; rebuild with `daer index`")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: cannot read the FAISS index: {exc}") from None
    if settings.kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = settings.nprobe
    return index


def search(index, settings: AnnSettings, query: np.ndarray, k: int,
           nprobe: int | None = None) -> np.ndarray:
    """Row numbers of the ``k`` best items for one query (fewer if the index is smaller)."""
    faiss = _faiss()
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    if settings.kind == "hnsw":
        params = faiss.SearchParametersHNSW(efSearch=max(settings.ef_search, k))
        _, rows = index.search(query, k, params=params)
    elif settings.kind == "ivf" and nprobe:
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        _, rows = index.search(query, k, params=params)
    else:
        _, rows = index.search(query, k)
    rows = rows[0]
    return rows[rows >= 0]
