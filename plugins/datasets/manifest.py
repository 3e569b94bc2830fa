"""The ``manifest`` layout: users' own image-text pairs listed in one JSONL or CSV file.

Each row (a JSON object per line, or a CSV row with a header) has:

* ``image`` — path of the image, relative to the manifest's folder (or absolute);
* ``text`` — the text itself, or ``text_file`` — a path to it (relative like ``image``);
* ``labels`` — one label or several (multi-label): class names or 0-based indices; in JSONL a
  list or a single value, in CSV separated by ``;`` or ``|``;
* ``split`` — optional: ``train``, ``val`` (also ``valid``, ``validation``, ``dev``) or
  ``test``; rows without one are split with the seeded ``split_fractions``;
* ``id`` — optional: a unique id (default: ``row-<line number>``);
* ``image_id`` — optional: the image the caption describes. Rows sharing a value are several
  captions of one image (instance-level retrieval, Flickr30k/COCO style): their records share
  :attr:`~daer_core.interfaces.data.PairRecord.image_id`. They must name the same image file
  and lie in the same split (else an error naming the id and the rows): two files under one
  id means a mislabelled row, and captions of one image on both sides of the train/test line
  would leak test images into training. Rows of one image without a ``split`` are split by
  seed together, as one unit. An empty value = the row's own image.

Classes come from ``classes`` (a list), ``classes_file``, or are inferred: the sorted names
used, or ``class_<k>`` for indices.
"""
from __future__ import annotations

import contextlib
import csv
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from daer_core.data.files import PathResolver
from daer_core.data.splits import SplitFractions
from daer_core.data.text import read_document, read_text_file
from daer_core.errors import DataError

from .common import LayoutParams, ProblemLog, Row, finish, read_class_names
# the image-id grouping lives in .image_ids; attach_image_ids is re-exported here because
# karpathy.py (and older code) import it from this module
from .image_ids import _Member, _check_shared_images, _image_id, _seeded_split, attach_image_ids

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv", "manifest.json")


class ManifestParams(LayoutParams):
    """Params of the ``manifest`` layout."""

    classes: list[str] | None = Field(None, description="class names in label order")
    classes_file: str | None = Field(None, description="class names file, one per line "
                                                       "(relative to the manifest's folder)")
    split_fractions: SplitFractions = Field(
        (0.8, 0.1, 0.1), description="train / val / test fractions for rows without a split")


def find_manifest(root: Path) -> Path:
    if root.is_file():
        return root
    if root.is_dir():
        for name in MANIFEST_NAMES:
            if (root / name).is_file():
                return root / name
        raise DataError(f"manifest layout: no {' / '.join(MANIFEST_NAMES)} in {root}")
    raise DataError(f"manifest layout: {root} does not exist")


#: one physical line: text up to and including \r\n, \r or \n (the last line may lack one)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def physical_lines(text: str, keepends: bool = False) -> list[str]:
    """Lines as files and editors count them. ``str.splitlines`` also breaks at U+2028,
    U+2029, U+0085 and other separators that may sit inside a caption, which shifted every
    line number after them and cut the row in two."""
    lines = _LINE.findall(text)
    return lines if keepends else [line.rstrip("\r\n") for line in lines]


def read_rows(path: Path, problems: ProblemLog) -> list[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each row of a JSONL or CSV manifest."""
    tf = read_text_file(path)
    if tf.used_fallback:
        problems.add("list_encoding", f"{path.name} is not UTF-8; read as {tf.encoding}",
                     [path.name], "warning")
    out = []
    if path.suffix.lower() == ".csv":
        return _read_csv(path, tf.text, problems)
    for lineno, line in enumerate(physical_lines(tf.text), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add("malformed_row", "lines that are not JSON objects",
                         [f"{where} ({exc.msg})"])
            continue
        if not isinstance(row, dict):
            problems.add("malformed_row", "lines that are not JSON objects", [where])
            continue
        out.append((where, row))
    return out


def _read_csv(path: Path, text: str, problems: ProblemLog
              ) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a CSV manifest, each named ``file:line`` by the line it starts on.

    The reader is strict about quotes: an unclosed quote would otherwise swallow the lines
    after it into one field, shift columns and invent classes (a split value read as a label).
    A record that breaks the quoting rules, or has more or fewer fields than the header, is
    reported as ``malformed_row`` with the line it starts on; reading resumes on the next
    line, so one bad row costs only itself.
    """
    lines = physical_lines(text, keepends=True)
    if not lines:
        return []
    try:
        header = [h.strip() for h in next(csv.reader([lines[0]], strict=True))]
    except (csv.Error, StopIteration):
        problems.add("malformed_row", "CSV header that cannot be parsed", [f"{path.name}:1"])
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    with _large_fields():
        _read_records(path, lines, header, out, problems)
    return out


@contextlib.contextmanager
def _large_fields():
    """Let a CSV field be as long as a caption may be: the csv module's default limit
    (131,072 characters) made a long caption look like an unclosed quote."""
    before = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _read_records(path: Path, lines: list[str], header: list[str],
                  out: list[tuple[str, dict[str, Any]]], problems: ProblemLog) -> None:
    start = 1  # index in `lines` of the next line to read
    while start < len(lines):
        reader = csv.reader(lines[start:], strict=True)
        consumed = 0  # lines of lines[start:] read so far
        try:
            for fields in reader:
                first = start + consumed + 1  # 1-based line the record starts on
                consumed = reader.line_num
                if not fields:  # blank line
                    continue
                where = f"{path.name}:{first}"
                if len(fields) != len(header):
                    more = "more" if len(fields) > len(header) else "fewer"
                    problems.add("malformed_row", "CSV rows with more or fewer fields than the "
                                 "header (e.g. an unescaped comma or a lost quote)",
                                 [f"{where} ({len(fields)} fields, {more} than the header's"
                                  f" {len(header)})"])
                    continue
                out.append((where, dict(zip(header, fields))))
            break
        except csv.Error as exc:
            bad = start + consumed + 1
            problems.add("malformed_row", "CSV rows that break the quoting rules (e.g. an "
                         "unclosed quote)", [f"{path.name}:{bad} ({exc})"])
            start = bad  # resume on the line after the one the broken record started on


def _label_values(raw: Any) -> list[str | int]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return [v.strip() if isinstance(v, str) else v for v in raw]
    if isinstance(raw, str):
        sep = ";" if ";" in raw else "|"
        values: list[str | int] = []
        for part in (p.strip() for p in raw.split(sep)):
            if part:
                values.append(int(part) if part.lstrip("-").isdigit() else part)
        return values
    return [raw]


def load_manifest(params: ManifestParams, *, check: bool = False):
    path = find_manifest(Path(params.root))
    base = path.parent
    problems = ProblemLog()
    raw_rows = read_rows(path, problems)
    parsed = [(where, row, _label_values(row.get("labels", row.get("label"))))
              for where, row in raw_rows]

    mixed_out: type | None = None
    if params.classes is not None:
        classes = list(params.classes)
    elif params.classes_file is not None:
        cf = base / params.classes_file
        if not cf.is_file():
            raise DataError(f"manifest layout: classes_file not found: {cf}")
        classes = read_class_names(cf)
    else:
        classes, mixed_out = _infer_classes(parsed)
    index = {c: k for k, c in enumerate(classes)}

    resolver = PathResolver(base)
    rows: list[Row] = []
    unsplit: list[Row] = []
    seen: set[str] = set()
    image_ids: dict[str, str] = {}           # pair id -> image id, for rows that give one
    shared: dict[str, list[_Member]] = {}    # image id -> its rows, in file order
    for where, row, labs in parsed:
        rid = str(row.get("id") or f"row-{where.rsplit(':', 1)[1]}").strip()
        if rid in seen:
            problems.add("duplicate_id", "ids used by several rows; later rows get a suffix",
                         [f"{rid} ({where})"], "warning")
            rid = f"{rid}~{where.rsplit(':', 1)[1]}"
        seen.add(rid)
        labels = _labels(labs, index, classes, where, problems, mixed_out)
        if labels is None:
            continue
        split = str(row.get("split") or "").strip().lower()
        if split and split not in SPLIT_ALIASES:
            problems.add("bad_split", "split values other than train / val / test", [where])
            continue
        if not row.get("image"):
            problems.add("malformed_row", "rows without an `image`", [where])
            continue
        image, how = resolver.resolve(str(row["image"]))
        if how in ("normalized", "other-extension"):
            problems.add("path_resolved", "image paths that differ from the file on disk by "
                         "stray spaces or the extension (the file found is used)", [rid],
                         "warning")
        text = _text(row, resolver, rid, where, problems)
        if text is Ellipsis:
            continue
        rec = Row(rid, text, image or base / str(row["image"]).strip(), labels,
                  SPLIT_ALIASES.get(split, "train"), image is not None)
        rows.append(rec)
        if not split:
            unsplit.append(rec)
        image_id = _image_id(row)
        if image_id is not None:
            image_ids[rid] = image_id
            shared.setdefault(image_id, []).append(
                _Member(where, str(row["image"]).strip(), rec, SPLIT_ALIASES.get(split)))
    _check_shared_images(shared, problems)
    if unsplit:
        _seeded_split(unsplit, image_ids, params)
    if not raw_rows:
        problems.add("empty_manifest", "the manifest holds no rows (only a header, or"
                     " nothing): there is nothing to train on", [path.name])
    info = {"manifest": str(path), "rows": len(raw_rows),
            "rows_split_by_seed": len(unsplit),
            "multi_label": any(len(r.labels) > 1 for r in rows)}
    if shared:
        info["image_ids"] = len(shared)
    loaded = finish("manifest", params, classes, rows, problems, info, check=check)
    return attach_image_ids(loaded, image_ids) if image_ids else loaded


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _infer_classes(parsed) -> tuple[list[str], type | None]:
    """Classes when none are given: the sorted names used, or ``class_<k>`` for indices.

    When names and indices are mixed, the kind most labels use wins and the rows with the
    other kind are reported one by one (``mixed_labels`` with ``file:line``); one stray value no
    longer makes the whole manifest unreadable. Returns the classes and the label type that
    is left out (None when the labels are not mixed).
    """
    values = [v for _, _, labs in parsed for v in labs]
    names = sorted({v for v in values if isinstance(v, str)})
    indices = [v for v in values if _is_index(v)]
    if names and indices and len(indices) > len(values) - len(indices):
        return [f"class_{k}" for k in range(max(indices) + 1)], str
    if names:
        return names, (int if indices else None)
    return [f"class_{k}" for k in range(max(indices, default=-1) + 1)], None


def _labels(values, index, classes, where, problems, left_out: type | None = None
            ) -> tuple[int, ...] | None:
    if not values:
        problems.add("no_label", "rows without labels", [where])
        return None
    out = []
    for v in values:
        if left_out is not None and isinstance(v, left_out) and not isinstance(v, bool):
            kind = "index" if left_out is int else "class name"
            problems.add("mixed_labels", "labels of the minority kind where the labels mix"
                         " class names and indices (give `classes` to match them)",
                         [f"{where} ({kind} {v!r})"])
            return None
        k = index.get(v) if isinstance(v, str) else v
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(classes):
            problems.add("bad_label", f"labels that are neither one of the {len(classes)} "
                         f"class names nor an index 0..{len(classes) - 1}", [f"{where} ({v!r})"])
            return None
        out.append(k)
    return tuple(dict.fromkeys(out))


def _text(row, resolver: PathResolver, rid: str, where: str, problems: ProblemLog):
    """The row's text (inline or from ``text_file``); None when the file is absent;
    Ellipsis when the row names no text at all (reported as malformed)."""
    if row.get("text") not in (None, ""):
        text = str(row["text"]).strip()
        if not text:
            problems.add("empty_text", "texts with no readable content", [f"{rid} ({where})"],
                         "warning")
        return text
    if not row.get("text_file"):
        problems.add("malformed_row", "rows with neither `text` nor `text_file`", [where])
        return Ellipsis
    path, _how = resolver.resolve(str(row["text_file"]))
    if path is None:
        return None
    doc = read_document(path)
    if doc.encoding not in ("utf-8", "utf-8-sig"):
        problems.add("text_encoding_fallback", "texts that are not UTF-8 (decoded with a "
                     "fallback encoding)", [rid], "warning")
    if not doc.text.strip():
        problems.add("empty_text", "texts with no readable content", [f"{rid} ({where})"],
                     "warning")
    return doc.text


def make_manifest(params: ManifestParams, check: bool = False):
    """Your own pairs from a JSONL or CSV manifest (image, text, labels, split); multi-label."""
    return load_manifest(params, check=check)
