"""The Wikipedia cross-modal set (Rasiwasia et al. 2010): 2866 pairs, 10 categories.

Expected layout under ``root`` (file names configurable)::

    categories.list                 class names, line k = label k (1-based)
    trainset_txt_img_cat.list       rows: text id <TAB> image id <TAB> label (1..C)
    testset_txt_img_cat.list        the standard test list, same format
    texts/<text id>.xml | .txt      <document id=… cat=…><text>…</text></document>, or plain
    images/<category>/<image id>.*  any image format; detected from the bytes

Splits: ``standard`` uses the two lists, with a seeded ``val_fraction`` of the train list
carved out for validation; ``random`` is a seeded 80/10/10 (``split_fractions``) over all
pairs. The report always shows the standard list sizes under ``info.standard_split``.

Known quirks handled: a stray character on a list id (resolved to the one file it matches,
warned about), XML that strict parsers reject (a third of the texts; read tolerantly), the
XML ``cat`` ids (a different numbering: checked against the list's label), images absent.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from daer_core.data.files import FolderIndex, resolve_id
from daer_core.data.splits import SplitFractions, carve, partition, sizes_from_fractions
from daer_core.data.text import read_document
from daer_core.errors import DataError

from .common import (LayoutParams, ProblemLog, Row, finish, pick_image, read_class_names,
                     read_list_rows)

#: the XML ``cat`` attribute uses the 29 original category ids; the lists use 1..10
XML_CAT_TO_LABEL: dict[str, int] = {"1": 1, "3": 2, "11": 3, "14": 4, "17": 5, "19": 6,
                                    "20": 7, "25": 8, "26": 9, "29": 10}
TEXT_EXTENSIONS = (".xml", ".txt")


class WikipediaParams(LayoutParams):
    """Params of the ``wikipedia`` layout."""

    split: Literal["standard", "random"] = Field(
        "standard", description="`standard`: the train/test lists (validation carved from "
        "train); `random`: seeded split_fractions over all pairs (the DAER paper's protocol)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="standard split: fraction "
                                "of the train list carved out (seeded) for validation")
    split_fractions: SplitFractions = Field(
        (0.8, 0.1, 0.1), description="random split: train / val / test fractions")
    texts_dir: str = Field("texts", description="folder of text files, relative to root")
    images_dir: str = Field("images", description="folder of per-category image folders")
    train_list: str = Field("trainset_txt_img_cat.list", description="standard train list")
    test_list: str = Field("testset_txt_img_cat.list", description="standard test list")
    categories: str = Field("categories.list", description="class names file")


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"wikipedia layout: {what} not found: {path}")
    return path


def load_wikipedia(params: WikipediaParams, *, check: bool = False):
    """Read the lists, resolve every text and image, read the texts; see module docstring."""
    root = Path(params.root)
    if not root.is_dir():
        raise DataError(f"wikipedia layout: root folder not found: {root}")
    problems = ProblemLog()
    classes = read_class_names(_require(root / params.categories, "category names file"))
    texts = FolderIndex.build(root / params.texts_dir, TEXT_EXTENSIONS)
    if not (root / params.texts_dir).is_dir():
        problems.add("texts_dir_missing", f"text folder {params.texts_dir}/ does not exist")
    images_dir = root / params.images_dir
    images = FolderIndex.build(images_dir)
    if not images_dir.is_dir():
        problems.add(
            "images_missing",
            f"the image folder {params.images_dir}/ does not exist, so no image is available. "
            "Texts and labels can still be used on their own (require_images: false) and the "
            "published features through the `features` layout, but DAER cannot be trained on "
            "raw images from this copy",
            severity="error" if params.require_images else "warning")

    lists = read_standard_lists(root, params.train_list, params.test_list, len(classes),
                                texts.by_stem, problems)
    listed: dict[str, list[Row]] = {}
    for part, entries in lists.items():
        listed[part] = []
        for e in entries:
            ri = resolve_id(e.raw_image, images.by_stem) if len(images) else None
            image_id = ri.name if ri and ri.name else e.raw_image.strip()
            if ri is not None and ri.changed:
                note_stray_id(problems, e.raw_image, image_id, e.where)
            folder = classes[e.label - 1]
            img = pick_image(images, image_id, folder, e.id, problems)
            listed[part].append(Row(
                id=e.id, text=_read_text(texts, e.text_name, e.id, e.label, problems),
                image=img or images_dir / folder / f"{image_id}.jpg",
                labels=(e.label - 1,), split=part, image_found=img is not None))

    rows = listed["train"] + listed["test"]
    _assign_splits(params, listed, rows)
    listed_ids = {r.id for r in rows}
    unlisted = sorted(s for s in texts.by_stem if s not in listed_ids)
    if unlisted:
        problems.add("unlisted_texts", "text files that no list row names (not used)",
                     unlisted, "warning")
    info = {
        "documents": len(rows),
        "text_files": len(texts),
        "image_files": len(images),
        "standard_split": {"train": len(listed["train"]), "test": len(listed["test"])},
        "split_mode": params.split,
        "val_fraction" if params.split == "standard" else "split_fractions":
            params.val_fraction if params.split == "standard" else list(params.split_fractions),
        "texts_complete": all(r.text is not None for r in rows),
        "images_present": any(r.image_found for r in rows),
        "text_only_usable": all(r.text is not None for r in rows) and bool(rows),
    }
    if check:
        info["texts_rejected_by_strict_xml"] = _count_strict_xml_failures(texts)
    return finish("wikipedia", params, classes, rows, problems, info, check=check)


@dataclass
class ListEntry:
    """One row of a standard list: ``id`` is the resolved text id (made unique),
    ``text_name`` the text file stem it matched (None: no file), ``label`` is 1-based."""

    id: str
    text_name: str | None
    raw_image: str
    label: int
    where: str


def note_stray_id(problems: ProblemLog, raw: str, resolved: str, where: str) -> None:
    """Record a list id with stray characters and what it was resolved to."""
    prob = problems.add("stray_characters_in_id", "list ids with stray characters, each "
                        "resolved to the one file it matches:", [raw], "warning")
    prob.message += f" {raw!r} -> {resolved!r} ({where});"


def read_standard_lists(root: Path, train_list: str, test_list: str, num_classes: int,
                        known_texts, problems: ProblemLog) -> dict[str, list[ListEntry]]:
    """The train and test lists' rows in file order. Text ids are resolved against
    ``known_texts`` (stems of the text files; stray characters are reported), labels checked
    to lie in 1..num_classes, repeated ids kept under a ``~N`` suffix with a warning."""
    out: dict[str, list[ListEntry]] = {}
    seen: dict[str, int] = {}
    for part, fname in (("train", train_list), ("test", test_list)):
        path = _require(root / fname, f"{part} list")
        out[part] = []
        for lineno, (raw_text, raw_image, raw_label) in read_list_rows(path, problems, 3):
            where = f"{fname}:{lineno}"
            label = _label(raw_label, num_classes)
            if label is None:
                problems.add("bad_label", f"labels that are not integers in 1..{num_classes}",
                             [where])
                continue
            rt = resolve_id(raw_text, known_texts)
            text_id = rt.name or raw_text.strip()
            if rt.changed:
                note_stray_id(problems, raw_text, text_id, where)
            row_id = text_id
            if text_id in seen:
                seen[text_id] += 1
                row_id = f"{text_id}~{seen[text_id]}"
                problems.add("duplicate_row", "a text id listed more than once; each row is "
                             "kept under a suffixed id", [where], "warning")
            else:
                seen[text_id] = 1
            out[part].append(ListEntry(row_id, rt.name, raw_image, label, where))
    return out


def _label(raw: str, num_classes: int) -> int | None:
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if 1 <= value <= num_classes else None


def _read_text(texts: FolderIndex, name: str | None, row_id: str, label: int,
               problems: ProblemLog) -> str | None:
    """The document's text, or None when no file matches; notes encoding fallbacks, empty
    texts and an XML ``cat`` that disagrees with the list's label."""
    if name is None:
        return None
    hits = sorted(texts.find(name), key=lambda h: TEXT_EXTENSIONS.index(h[1].suffix.lower())
                  if h[1].suffix.lower() in TEXT_EXTENSIONS else 99)
    if not hits:
        return None
    doc = read_document(hits[0][1])
    if doc.encoding not in ("utf-8", "utf-8-sig"):
        problems.add("text_encoding_fallback", "texts that are not UTF-8 (decoded with a "
                     "fallback encoding)", [row_id], "warning")
    if not doc.text:
        problems.add("empty_text", "texts with no readable content", [row_id], "warning")
    cat = doc.attrs.get("cat")
    if cat is not None and XML_CAT_TO_LABEL.get(cat.strip()) not in (None, label):
        problems.add("label_disagrees_with_xml_cat", "rows whose XML `cat` attribute maps to "
                     "another label than the list's (the list's label is used)", [row_id],
                     "warning")
    return doc.text


def _assign_splits(params: WikipediaParams, listed: dict[str, list[Row]],
                   rows: list[Row]) -> None:
    if params.split == "standard":
        _train, val = carve(listed["train"], params.val_fraction, params.seed)
        for r in val:
            r.split = "val"
        return
    sizes = sizes_from_fractions(len(rows), params.split_fractions)
    for name, part in zip(("train", "val", "test"), partition(rows, sizes, params.seed)):
        for r in part:
            r.split = name


def _count_strict_xml_failures(texts: FolderIndex) -> int:
    """How many .xml texts a strict XML parser rejects (they are read tolerantly anyway)."""
    from lxml import etree
    bad = 0
    for hits in texts.by_stem.values():
        for _, path in hits:
            if path.suffix.lower() != ".xml":
                continue
            try:
                etree.fromstring(path.read_bytes())
            except etree.XMLSyntaxError:
                bad += 1
    return bad


def make_wikipedia(params: WikipediaParams, check: bool = False):
    """Wikipedia cross-modal set (2866 pairs, 10 classes): standard train/test lists, texts as XML,
    images per category folder.
    """
    return load_wikipedia(params, check=check)

