"""``results.csv``: one row per finished cell, rewritten atomically after every cell.

Atomic means the file on disk is always either the old or the new complete table: rows are
written to a temporary file in the same folder, flushed to disk, and moved over the old file
with :func:`os.replace`. An interruption therefore never leaves a half-written row, and a
restart skips every cell whose row is present with the same ``config_hash`` (a cell whose
method, dataset or run settings changed since is computed again).

A cell is judged by one of two protocols (:mod:`daer_core.evaluation.protocol`):
**category** (mAP: ``i2t``, ``t2i``, ``avg``, ``chance``) or **instance** (Recall@K as on
Flickr30k / COCO: ``rsum``, ``i2t_r1`` ... ``t2i_medr``, their ``chance_*`` levels and, when
the run re-ranks, the ``first_stage_*`` figures of its cosine first stage). An instance cell
keeps the class view's mAP in the category columns when its data has classes and leaves them
empty when it has none; a category cell leaves the instance columns empty. Every instance
column came later, so files written before them load with ``protocol: category``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAN = float("nan")
#: the Recall@K cut-offs with a column of their own (the papers' 1, 5 and 10)
RECALL_KS: tuple[int, ...] = (1, 5, 10)


@dataclass
class CellResult:
    method: str
    dataset: str
    run: int
    seed: int
    kind: str
    i2t: float                    # mAP (the class view for instance cells; NaN without classes)
    t2i: float
    avg: float
    chance: float
    fit_seconds: float
    peak_memory_mb: float
    n_train: int
    n_eval: int
    config_hash: str
    finished_at: str
    tune_trials: int = 0          # trials of the cell's search (0: untuned)
    tune_seconds: float = 0.0     # wall time of that search
    tuned_params: str = ""        # the settings it chose, as JSON
    # --- instance-level protocol (NaN / 0 for category cells) ---
    protocol: str = "category"    # "category" (mAP) or "instance" (Recall@K)
    n_images: int = 0             # distinct images in the evaluation gallery
    rsum: float = NAN             # sum of the Recall@K values both ways, in percent
    i2t_r1: float = NAN           # Recall@K in [0, 1]: image queries ...
    i2t_r5: float = NAN
    i2t_r10: float = NAN
    t2i_r1: float = NAN           # ... and caption queries
    t2i_r5: float = NAN
    t2i_r10: float = NAN
    i2t_medr: float = NAN         # median rank of the first relevant item (1 = top)
    t2i_medr: float = NAN
    chance_rsum: float = NAN      # what a random ranking scores on the same gallery
    chance_i2t_r1: float = NAN
    chance_i2t_r5: float = NAN
    chance_i2t_r10: float = NAN
    chance_t2i_r1: float = NAN
    chance_t2i_r5: float = NAN
    chance_t2i_r10: float = NAN
    rerank_k: int = 0             # candidates re-scored per query (0: not re-ranked)
    first_stage_rsum: float = NAN  # the re-ranked run's cosine first stage, same figures
    first_stage_i2t_r1: float = NAN
    first_stage_i2t_r5: float = NAN
    first_stage_i2t_r10: float = NAN
    first_stage_t2i_r1: float = NAN
    first_stage_t2i_r5: float = NAN
    first_stage_t2i_r10: float = NAN
    first_stage_i2t_medr: float = NAN
    first_stage_t2i_medr: float = NAN

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.method, self.dataset, self.run)

    @property
    def instance(self) -> bool:
        return self.protocol == "instance"

    @property
    def reranked(self) -> bool:
        return self.instance and self.rerank_k > 0


COLUMNS: list[str] = [f.name for f in fields(CellResult)]
# (annotations are strings here: ``from __future__ import annotations``)
_INTS = {f.name for f in fields(CellResult) if f.type in ("int", int)}
_FLOATS = {f.name for f in fields(CellResult) if f.type in ("float", float)}
#: columns added later, with the value rows written before them had (instance figures of a
#: category row are not applicable: empty, read as NaN)
_OPTIONAL: dict[str, str] = {
    "tune_trials": "0", "tune_seconds": "0", "tuned_params": "",
    **{f.name: ("" if f.name in _FLOATS else str(f.default))
       for f in fields(CellResult)[COLUMNS.index("protocol"):]}}
#: the columns every results.csv daer ever wrote starts with
REQUIRED_COLUMNS: list[str] = [c for c in COLUMNS if c not in _OPTIONAL]
#: the figures a category cell must have, and an instance cell
_NEEDED = {"category": ("i2t", "t2i", "avg"), "instance": ("rsum",)}


def _float(raw: str) -> float:
    """A float column; empty is not applicable (NaN), as written for missing figures."""
    return NAN if raw.strip() == "" else float(raw)


def _parse(row: dict[str, str]) -> CellResult:
    values: dict[str, Any] = {}
    for name in COLUMNS:
        raw = row.get(name)
        if name in _OPTIONAL and (raw is None or raw == ""):
            # absent, or blank in a file that merged rows from before the column existed
            raw = _OPTIONAL[name]
        if raw is None:
            raise ValueError(f"column {name!r} missing")
        values[name] = int(raw) if name in _INTS else _float(raw) if name in _FLOATS else raw
    protocol = values["protocol"]
    if protocol not in _NEEDED:
        raise ValueError(f"protocol {protocol!r} is neither category nor instance")
    for name in _NEEDED[protocol]:
        if not math.isfinite(values[name]):
            raise ValueError(f"{name} is not a number")
    return CellResult(**values)


def _recall_columns(prefix: str, rep: dict) -> dict[str, float]:
    """``{prefix}i2t_r1`` ... ``{prefix}t2i_medr`` of one Recall@K report (NaN where the
    run's ``recall_ks`` lacks a cut-off)."""
    out: dict[str, float] = {}
    for d in ("i2t", "t2i"):
        for k in RECALL_KS:
            out[f"{prefix}{d}_r{k}"] = float(rep.get(d, {}).get(f"r@{k}", NAN))
        if f"{prefix}{d}_medr" in COLUMNS:
            out[f"{prefix}{d}_medr"] = float(rep.get(d, {}).get("medr", NAN))
    return out


def metric_columns(metrics: dict) -> dict[str, Any]:
    """The result columns of a cell's metrics: a baseline's ``retrieval_report`` or a
    trained run's ``metrics.json`` under either protocol. Figures a protocol does not give
    are NaN (an instance run on data without classes has no mAP)."""
    out: dict[str, Any] = {k: float(metrics.get(k, NAN)) for k in ("i2t", "t2i", "avg",
                                                                   "chance")}
    if metrics.get("protocol") != "instance":
        return {**out, "protocol": "category"}
    inst = metrics["instance"]
    chance = inst.get("chance", {})
    out.update(protocol="instance", n_images=int(inst.get("images", 0)),
               rsum=float(inst["rsum"]), **_recall_columns("", inst),
               **_recall_columns("chance_", chance))
    # the chance rsum over the run's own cut-offs, as ``rsum`` sums them
    out["chance_rsum"] = (100.0 * sum(chance[d][key] for d in ("i2t", "t2i")
                                      for key in chance[d] if key.startswith("r@"))
                          if chance else NAN)
    first = metrics.get("instance_first_stage")
    if metrics.get("rerank_k") and first:
        out.update(rerank_k=int(metrics["rerank_k"]), first_stage_rsum=float(first["rsum"]),
                   **_recall_columns("first_stage_", first))
    return out


class ResultsTable:
    """The finished cells of one benchmark output folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[tuple[str, str, int], CellResult] = {}
        self.skipped_lines = 0
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        with self.path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for lineno, row in enumerate(reader, start=2):
                try:
                    cell = _parse(row)
                except (TypeError, ValueError) as exc:
                    self.skipped_lines += 1
                    log.warning("%s line %d: unreadable row skipped (%s); that cell will be"
                                " computed again", self.path, lineno, exc)
                    continue
                self.rows[cell.key] = cell

    def done(self, key: tuple[str, str, int], config_hash: str) -> bool:
        row = self.rows.get(key)
        return row is not None and row.config_hash == config_hash

    def add(self, cell: CellResult) -> None:
        """Record a finished cell and rewrite the file atomically."""
        self.rows[cell.key] = cell
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for cell in self.rows.values():
                row = asdict(cell)
                for name in _FLOATS:
                    value = row[name]
                    # not applicable is an empty field (pandas and spreadsheets read NaN)
                    row[name] = ("" if not math.isfinite(value) else
                                 f"{value:.6g}" if name.endswith(("seconds", "_mb"))
                                 else f"{value:.6f}")
                writer.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
