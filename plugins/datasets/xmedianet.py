"""XMediaNet's image and text parts (Peng et al.): 200 classes, 32000 / 4000 / 4000 pairs.

Expected layout under ``root`` (names configurable)::

    image/...                         image files, any sub-folders, any format (by content)
    text/...                          text files, one document each (.txt or XML-ish)
    list/image_{split}.list           rows: <path relative to image/> <label>
    list/text_{split}.list            rows: <path relative to text/>  <label>
    classes.txt                       optional: class names, one per line, in label order

``{split}`` is ``train``, ``val`` and ``test``. Row k of ``image_{split}.list`` pairs with
row k of ``text_{split}.list``; the two labels must agree. The label is the last
whitespace-separated field, so paths may contain spaces. Labels are 0- or 1-based
(``label_base``; auto: 1-based when no list contains a 0). Without val lists, a seeded
``val_fraction`` of train becomes the validation split. Listed paths that differ from the
files only by stray spaces or the extension are resolved and reported.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from daer_core.data.files import PathResolver
from daer_core.data.splits import carve
from daer_core.data.text import read_document
from daer_core.errors import DataError

from .common import LayoutParams, ProblemLog, Row, finish, read_class_names

RELEASE = {"classes": 200, "train": 32000, "val": 4000, "test": 4000}
SPLIT_NAMES = ("train", "val", "test")


class XMediaNetParams(LayoutParams):
    """Params of the ``xmedianet`` layout."""

    image_dir: str = Field("image", description="folder the image list's paths are relative to")
    text_dir: str = Field("text", description="folder the text list's paths are relative to")
    image_list: str = Field("list/image_{split}.list",
                            description="image list per split ({split}: train, val, test)")
    text_list: str = Field("list/text_{split}.list",
                           description="text list per split ({split}: train, val, test)")
    classes_file: str = Field("classes.txt", description="optional class names file")
    label_base: Literal["auto", "0", "1"] = Field(
        "auto", description="whether list labels start at 0 or 1 (auto: 1 when no 0 appears)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="used only without val "
                                "lists: seeded fraction of train carved out for validation")


def _read_list(path: Path, problems: ProblemLog) -> list[tuple[str, str, int] | None]:
    """``(where, relative path, raw label)`` per non-empty row (the label is the last
    field); a malformed row is reported and kept as None so later rows stay paired."""
    from daer_core.data.text import read_text_file
    out = []
    for lineno, line in enumerate(read_text_file(path).text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        fields = line.rstrip().rsplit(None, 1)
        try:
            if len(fields) != 2:
                raise ValueError
            out.append((where, fields[0].strip(), int(fields[1])))
        except ValueError:
            problems.add("malformed_row", "list rows that are not `<path> <integer label>`",
                         [where])
            out.append(None)
    return out


def load_xmedianet(params: XMediaNetParams, *, check: bool = False):
    root = Path(params.root)
    if not root.is_dir():
        raise DataError(f"xmedianet layout: root folder not found: {root}")
    problems = ProblemLog()
    lists: dict[str, tuple[list, list]] = {}
    for split in SPLIT_NAMES:
        ipath = root / params.image_list.format(split=split)
        tpath = root / params.text_list.format(split=split)
        if not ipath.is_file() and not tpath.is_file():
            if split == "val":
                continue
            raise DataError(f"xmedianet layout: {split} lists not found: expected {ipath} and "
                            f"{tpath} (rows `<relative path> <label>`; see docs/datasets.md)")
        for p in (ipath, tpath):
            if not p.is_file():
                raise DataError(f"xmedianet layout: {p} not found (its partner list exists)")
        lists[split] = (_read_list(ipath, problems), _read_list(tpath, problems))

    all_labels = [row[2] for i, t in lists.values() for rows in (i, t) for row in rows if row]
    base = params.label_base
    if base == "auto":
        base = "1" if all_labels and min(all_labels) >= 1 else "0"
    offset = int(base)
    names_path = root / params.classes_file
    n_classes = max(all_labels, default=offset - 1) - offset + 1
    if names_path.is_file():
        classes = read_class_names(names_path)
    else:
        classes = [f"class_{k}" for k in range(n_classes)]

    images, texts = PathResolver(root / params.image_dir), PathResolver(root / params.text_dir)
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for split, (irows, trows) in lists.items():
        if len(irows) != len(trows):
            problems.add("list_length_mismatch", f"{split}: the image list has {len(irows)} "
                         f"rows and the text list {len(trows)}; row k of one pairs with row k "
                         "of the other", [split])
        for irow, trow in zip(irows, trows):
            if irow is None or trow is None:
                continue
            (iw, ipath, ilab), (tw, tpath, tlab) = irow, trow
            if ilab != tlab:
                problems.add("label_mismatch", "paired image and text rows with different "
                             "labels", [f"{iw} vs {tw}"])
                continue
            label = ilab - offset
            if not 0 <= label < len(classes):
                problems.add("bad_label", f"labels outside {offset}..{len(classes) - 1 + offset}",
                             [iw])
                continue
            pid = str(Path(ipath).with_suffix(""))
            if pid in seen:
                seen[pid] += 1
                pid = f"{pid}~{seen[pid]}"
                problems.add("duplicate_row", "an image path listed more than once; each row "
                             "is kept under a suffixed id", [iw], "warning")
            else:
                seen[pid] = 1
            img = _resolve(images, ipath, pid, problems)
            txt = _resolve(texts, tpath, pid, problems)
            text = None
            if txt is not None:
                doc = read_document(txt)
                text = doc.text
                if doc.encoding not in ("utf-8", "utf-8-sig"):
                    problems.add("text_encoding_fallback", "texts that are not UTF-8 (decoded "
                                 "with a fallback encoding)", [pid], "warning")
                if not text:
                    problems.add("empty_text", "texts with no readable content", [pid],
                                 "warning")
            rows.append(Row(pid, text, img or root / params.image_dir / ipath, (label,),
                            split, img is not None))
    carved = "val" not in lists and params.val_fraction > 0
    if carved:
        _keep, val = carve([r for r in rows if r.split == "train"], params.val_fraction,
                           params.seed)
        for r in val:
            r.split = "val"
    info = {"label_base": offset, "val_lists": "val" in lists,
            "val_carved_from_train": params.val_fraction if carved else None,
            "release": RELEASE}
    return finish("xmedianet", params, classes, rows, problems, info, check=check)


def _resolve(resolver: PathResolver, rel: str, pid: str, problems: ProblemLog) -> Path | None:
    path, how = resolver.resolve(rel)
    if how in ("normalized", "other-extension"):
        prob = problems.add("path_resolved", "listed paths that differ from the file on disk "
                            "by stray spaces or the extension (the file found is used), e.g.:",
                            [pid], "warning")
        if len(prob.ids) <= 5:
            prob.message += f" {rel!r} -> {path.name!r};"
    return path


def make_xmedianet(params: XMediaNetParams, check: bool = False):
    """XMediaNet image and text parts (200 classes) from per-split list files of paths and labels.
    """
    return load_xmedianet(params, check=check)
