"""The approximate-nearest-neighbour structure of one gallery side (FAISS, inner product).

``flat`` is exact maximum-inner-product search over the first-stage vectors — cheap enough up
to about 10^5 items (tens of MFLOP per query). Beyond that ``auto`` picks ``ivfpq``: an
inverted file with ``4 sqrt(N)`` k-means lists, of which ``nprobe`` are visited, whose vectors
are product-quantised to ``pq_m`` bytes each (8 bits per sub-vector) — a 10^6-item side of
64-d vectors takes 16 MB instead of 256 MB, and the file is opened memory-mapped. The lost
precision costs little: the candidates are re-scored exactly by the relation head. ``ivf``
(uncompressed lists) and ``hnsw`` (a graph, no training) are available by name. IVF
quantisers are trained on at most ``TRAIN_SAMPLE`` vectors drawn with a fixed seed, so their
fit does not grow with the gallery. Row ``j`` of the FAISS index is item ``j`` of the side, in
the order items were added, so adding items appends rows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

KINDS: tuple[str, ...] = ("auto", "flat", "ivf", "ivfpq", "hnsw")
#: up to this many items ``auto`` keeps the exact flat index
FLAT_LIMIT = 100_000
#: IVF k-means and PQ codebooks are trained on at most this many vectors (seeded sample)
TRAIN_SAMPLE = 65_536
#: kinds FAISS can open memory-mapped (their lists / codes stay in the file)
MMAP_KINDS = ("flat", "ivf", "ivfpq")


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
    pq_m: int = 0            # ivfpq: sub-quantisers per vector
    pq_nbits: int = 0        # ivfpq: bits per sub-quantiser code (8; fewer for tiny sides)
    trained_on: int = 0      # ivf / ivfpq: vectors the quantisers were trained on

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
        kind = "flat" if count <= FLAT_LIMIT else "ivfpq"
    if kind in ("ivf", "ivfpq"):
        lists = nlist or max(1, int(4 * math.sqrt(max(count, 1))))
        # FAISS wants ~39 training points a list, and trains on at most TRAIN_SAMPLE
        lists = max(1, min(lists, min(count, TRAIN_SAMPLE) // 39 or 1))
        return AnnSettings(kind, nlist=lists,
                           nprobe=nprobe or min(lists, max(8, lists // 8), 64))
    return AnnSettings(kind)


def pq_subquantizers(dim: int) -> int:
    """Sub-quantisers for ``dim``-d vectors: 2 dimensions each where ``dim`` allows (a
    divisor of ``dim``, at most 64 bytes per vector), so codes keep most of the ranking."""
    for m in sorted({d for d in range(1, dim + 1) if dim % d == 0}, reverse=True):
        if m <= min(64, max(1, dim // 2)):
            return m
    return 1


def training_sample(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """At most :data:`TRAIN_SAMPLE` rows of ``vectors``, drawn with a fixed seed."""
    if len(vectors) <= TRAIN_SAMPLE:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), TRAIN_SAMPLE,
                                                      replace=False))
    return vectors[rows]


def build(settings: AnnSettings, vectors: np.ndarray):
    """A new FAISS index over ``vectors`` (IVF is trained on them first)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    d = vectors.shape[1]
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif settings.kind in ("ivf", "ivfpq"):
        quantizer = faiss.IndexFlatIP(d)
        if settings.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, d, settings.nlist, faiss.METRIC_INNER_PRODUCT)
        sample = training_sample(vectors)
        if settings.kind == "ivfpq":
            settings.pq_m = settings.pq_m or pq_subquantizers(d)
            # a codebook of 2^nbits centroids needs as many training vectors
            settings.pq_nbits = settings.pq_nbits or min(8, max(1, int(math.log2(
                max(2, len(sample))))))
            index = faiss.IndexIVFPQ(quantizer, d, settings.nlist, settings.pq_m,
                                     settings.pq_nbits, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        settings.trained_on = len(sample)
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


def load(path: Path, settings: AnnSettings, *, mmap: bool = False):
    """Open a saved index; ``mmap`` leaves the vectors or codes in the file (pages are read
    when a search touches them), where the kind allows (:data:`MMAP_KINDS`)."""
    faiss = _faiss()
    if not path.is_file():
        raise DataError(f"{path}: the FAISS index file is missing; rebuild with `daer index`")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY \
        if mmap and settings.kind in MMAP_KINDS else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise DataError(f"{path}: cannot read the FAISS index: {exc}") from None
    if settings.kind in ("ivf", "ivfpq"):
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
    elif settings.kind in ("ivf", "ivfpq") and nprobe:
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        _, rows = index.search(query, k, params=params)
    else:
        _, rows = index.search(query, k)
    rows = rows[0]
    return rows[rows >= 0]
