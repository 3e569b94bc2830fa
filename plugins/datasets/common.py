"""What every file-based layout shares: params, problem collection, and turning resolved rows
into a :class:`PairDataset` that either raises on bad data or reports it.

A layout module only reads its own files into :class:`Row` objects (with the problems it
found); :func:`finish` applies the ``missing`` policy uniformly:

* ``missing: error`` (default) — rows whose text or image is absent are an error; building the
  dataset raises :class:`~daer_core.errors.DataError` listing the first ids and the count;
* ``missing: skip`` — such rows are dropped with a count, a warning-level problem and a
  warning in the log.

Factories accept ``check=True`` (used by ``daer data check``): problems are then collected and
never raised, and the layouts run slower checks too (every image is decoded completely).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from pydantic import Field

from daer_core.data.files import FolderIndex, extension_mismatch, sniff_image_format
from daer_core.errors import DataError
from daer_core.interfaces.data import SPLITS, DataReport, PairDataset, PairRecord, Problem
from registry import Params

log = logging.getLogger("daer.data")

#: how many ids an error message lists before "(+N more)"
SHOW_IDS = 5


def preview(ids: Sequence[str], n: int = SHOW_IDS) -> str:
    """``a, b, c (+12 more)`` — the first ids of a list and how many were left out."""
    head = ", ".join(str(i) for i in ids[:n])
    return head + (f" (+{len(ids) - n} more)" if len(ids) > n else "")


class LayoutParams(Params):
    """Params shared by the file-based pair layouts."""

    root: str = Field(..., description="the dataset's folder (for `manifest`: the manifest "
                                       "file or a folder holding manifest.jsonl/.csv)")
    missing: Literal["error", "skip"] = Field(
        "error", description="rows whose image or text file is absent: `error` stops with the "
        "list of ids; `skip` drops them with a count and a warning")
    require_images: bool = Field(
        True, description="treat absent images as a problem; false allows text-only use "
        "(records then point at the expected image path, which fails only when decoded)")
    seed: int = Field(0, ge=0, description="seed of every random split choice")


class ProblemLog:
    """Problems keyed by code: the same code found again adds ids to the same problem."""

    def __init__(self) -> None:
        self._by_code: dict[str, Problem] = {}

    def add(self, code: str, message: str, ids: Iterable[str] = (),
            severity: Literal["error", "warning"] = "error") -> Problem:
        prob = self._by_code.get(code)
        if prob is None:
            prob = self._by_code[code] = Problem(code, message, [], severity)
        prob.ids.extend(str(i) for i in ids)
        return prob

    def get(self, code: str) -> Problem | None:
        return self._by_code.get(code)

    def pop(self, code: str) -> Problem | None:
        return self._by_code.pop(code, None)

    def __iter__(self):
        return iter(self._by_code.values())

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self if p.severity == "error"]


@dataclass
class Row:
    """One pair as a layout read it, before the missing-file policy is applied.

    ``image`` is the resolved file, or the expected path when it is absent
    (``image_found=False``); ``text`` is None when the text file is absent.
    """

    id: str
    text: str | None
    image: Path
    labels: tuple[int, ...]
    split: str
    image_found: bool = True


class LoadedPairs(PairDataset):
    """Pairs read from disk plus everything found while reading them."""

    def __init__(self, layout: str, root: str, classes: list[str],
                 splits: dict[str, list[PairRecord]], problems: list[Problem],
                 info: dict | None = None, native_image_size: int | None = None):
        self.layout = layout
        self.root = root
        self.classes = list(classes)
        self._splits = {s: list(splits.get(s, [])) for s in SPLITS}
        self.problems = problems
        self.info = dict(info or {})
        self.native_image_size = native_image_size

    def split(self, name):
        if name not in self._splits:
            raise KeyError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return self._splits[name]

    def report(self) -> DataReport:
        rep = super().report()
        rep.class_counts = {s: {c: per.get(c, 0) for c in self.classes}
                            for s, per in rep.class_counts.items()}
        rep.layout, rep.root = self.layout, self.root
        rep.problems = list(self.problems)
        rep.info = dict(self.info)
        return rep


def pick_image(index: FolderIndex, stem: str, folder: str | None, row_id: str,
               problems: ProblemLog) -> Path | None:
    """The image file for ``stem``, preferring the class folder ``folder`` (the list's label
    decides when the same id sits in several class folders, with a warning)."""
    hits = index.find(stem)
    if not hits:
        return None
    if len(hits) == 1:
        where, path = hits[0]
        if folder is not None and where.lower() != folder.lower():
            problems.add("image_in_other_class_folder",
                         "image found only in another class's folder; the list's label is kept",
                         [row_id], "warning")
        return path
    same = [p for w, p in hits if folder is not None and w.lower() == folder.lower()]
    problems.add("duplicate_image_id",
                 "the same image id is present in several folders; the file in the folder of "
                 "the list's label is used (else the first in name order)", [row_id], "warning")
    return same[0] if same else hits[0][1]


def check_images(rows: Sequence[Row], problems: ProblemLog) -> None:
    """Decode every found image completely: files that are not an image or are cut short
    (a JPEG truncated after an intact header opens fine and fails only when its pixels are
    read) are errors — training would fail on them the same way; a format that differs from
    the extension is a warning (it is read correctly, by content). Reads every image once,
    so it shows progress on a terminal. A file several pairs share (several captions of one
    image) is decoded once, and its verdict given to each of them."""
    from daer_core.data.images import undecodable
    found = [r for r in rows if r.image_found]
    first: dict[str, Row] = {}
    for r in found:
        first.setdefault(str(r.image), r)
    broken = {rid for rid, _ in undecodable([PairRecord(f.id, "", f.image, f.labels)
                                              for f in first.values()])}
    bad_files = {key for key, f in first.items() if f.id in broken}
    bad = [r.id for r in found if str(r.image) in bad_files]
    if bad:
        problems.add("image_unreadable", "image files that cannot be decoded completely (not"
                     " an image, or cut short)", bad)
    sniffed: dict[str, str | None] = {}
    for row in found:
        if str(row.image) in bad_files:
            continue
        key = str(row.image)
        if key not in sniffed:
            sniffed[key] = sniff_image_format(row.image)
        fmt = sniffed[key]
        if extension_mismatch(row.image, fmt):
            problems.add("image_extension_mismatch",
                         "image files whose extension names another format (they are decoded "
                         "by content, so this is harmless)", [row.id], "warning")


def finish(layout: str, params: LayoutParams, classes: list[str], rows: list[Row],
           problems: ProblemLog, info: dict, *, check: bool,
           native_image_size: int | None = None) -> LoadedPairs:
    """Apply the missing-file policy, build records per split, raise or report."""
    missing_text = [r.id for r in rows if r.text is None]
    missing_img = [r.id for r in rows if not r.image_found]
    if missing_text:
        problems.add("texts_missing", "rows whose text file is absent", missing_text)
    if missing_img:
        problems.add("images_missing", "rows whose image file is absent", missing_img,
                     "error" if params.require_images else "warning")
    if check and rows:
        check_images(rows, problems)
        unreadable = problems.get("image_unreadable")
        if unreadable is not None and params.missing == "skip":
            # training skips pairs whose image cannot be decoded under missing=skip
            unreadable.severity = "warning"
            unreadable.message += " (skipped when training: missing=skip)"

    drop = set(missing_text) | (set(missing_img) if params.require_images else set())
    if drop and params.missing == "skip":
        for code in ("texts_missing", "images_missing"):
            prob = problems.get(code)
            if prob is not None:
                prob.severity = "warning"
                prob.message += " (skipped: missing=skip)"
        problems.add("rows_skipped", f"{len(drop)} incomplete rows skipped (missing=skip)",
                     sorted(drop), "warning")
        log.warning("%s: skipped %d rows whose image or text file is absent (missing=skip): %s",
                    layout, len(drop), preview(sorted(drop)))
        rows = [r for r in rows if r.id not in drop]

    splits: dict[str, list[PairRecord]] = {s: [] for s in SPLITS}
    for r in rows:
        splits[r.split].append(PairRecord(r.id, r.text or "", r.image, r.labels))
    info = {**info, "missing": params.missing, "require_images": params.require_images}
    ds = LoadedPairs(layout, str(params.root), classes, splits, list(problems), info,
                     native_image_size)
    if not check:
        raise_if_errors(layout, params.root, problems)
        if not splits["train"]:
            raise DataError(f"{layout} data at {params.root}: the train split is empty"
                            + (f" ({len(drop)} incomplete rows were skipped)" if drop else ""))
    return ds


def raise_if_errors(layout: str, root: str, problems: ProblemLog) -> None:
    """Stop with every error-level problem, each with its first ids and count."""
    errors = problems.errors
    if not errors:
        return
    lines = [f"{layout} data at {root} cannot be used as is:"]
    for p in errors:
        ids = f": {preview(p.ids)}" if p.ids else ""
        lines.append(f"  - {p.code} ({len(p.ids) or 1}): {p.message}{ids}")
    lines.append(f"See every problem with `daer data check {root} --layout {layout}`; "
                 "`missing: skip` drops rows whose files are absent.")
    raise DataError("\n".join(lines))


def read_list_rows(path: Path, problems: ProblemLog,
                   ncols: int) -> list[tuple[int, list[str]]]:
    """Non-empty rows of a list file, with line numbers. A row with a tab is split on tabs
    (so names may contain spaces), otherwise on whitespace. Rows with the wrong number of
    columns are reported (``file:line``) and left out."""
    from daer_core.data.text import read_text_file
    tf = read_text_file(path)
    if tf.used_fallback:
        problems.add("list_encoding", f"{path.name} is not UTF-8; read as {tf.encoding}",
                     [path.name], "warning")
    out = []
    for lineno, line in enumerate(tf.text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        while cols and not cols[-1].strip():  # trailing tabs
            cols.pop()
        if len(cols) != ncols:
            problems.add("malformed_row", f"list rows without exactly {ncols} columns",
                         [f"{path.name}:{lineno}"])
            continue
        out.append((lineno, cols))
    return out


def read_class_names(path: Path) -> list[str]:
    """Class names, one per line (line k = label k in 1-based lists)."""
    from daer_core.data.text import read_text_file
    return [ln.strip() for ln in read_text_file(path).text.splitlines() if ln.strip()]
