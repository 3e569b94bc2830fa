"""``results.csv``: one row per finished cell, rewritten atomically after every cell.

Atomic means the file on disk is always either the old or the new complete table: rows are
written to a temporary file in the same folder, flushed to disk, and moved over the old file
with :func:`os.replace`. An interruption therefore never leaves a half-written row, and a
restart skips every cell whose row is present with the same ``config_hash`` (a cell whose
method, dataset or run settings changed since is computed again).
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class CellResult:
    method: str
    dataset: str
    run: int
    seed: int
    kind: str
    i2t: float
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

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.method, self.dataset, self.run)


COLUMNS: list[str] = [f.name for f in fields(CellResult)]
_INTS = {"run", "seed", "n_train", "n_eval", "tune_trials"}
_FLOATS = {"i2t", "t2i", "avg", "chance", "fit_seconds", "peak_memory_mb", "tune_seconds"}
#: columns added later, with the value rows written before them had
_OPTIONAL = {"tune_trials": "0", "tune_seconds": "0", "tuned_params": ""}


def _parse(row: dict[str, str]) -> CellResult:
    values = {}
    for name in COLUMNS:
        raw = row.get(name, _OPTIONAL.get(name))
        if raw is None:
            raise ValueError(f"column {name!r} missing")
        values[name] = int(raw) if name in _INTS else float(raw) if name in _FLOATS else raw
    for name in ("i2t", "t2i", "avg"):
        if not math.isfinite(values[name]):
            raise ValueError(f"{name} is not a number")
    return CellResult(**values)


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
                    row[name] = f"{row[name]:.6g}" if name.endswith(("seconds", "_mb")) \
                        else f"{row[name]:.6f}"
                writer.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
