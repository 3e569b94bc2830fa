"""Karpathy's splits of Flickr8k, Flickr30k and MS-COCO: several captions per image.

Karpathy & Fei-Fei (2015) published one JSON file per set (``dataset_flickr8k.json``,
``dataset_flickr30k.json``, ``dataset_coco.json``) that fixes the split of every image; the
instance-level retrieval papers (VSE++, SCAN and their successors) all report on it. Expected
layout under ``root`` (names configurable)::

    dataset_<name>.json     {"dataset": "flickr8k", "images": [entry, ...]}
    images/[<filepath>/]<filename>

Each entry is ``{"filename", "filepath" (COCO only: "train2014" / "val2014"), "imgid",
"split", "sentences": [{"raw", "tokens", "sentid"}, ...]}``; ``split`` is ``train``,
``restval``, ``val`` or ``test``.

Every caption becomes one pair: id ``<imgid>-<sentid>``, the raw caption as text (Karpathy's
lower-cased ``tokens`` are not used: text encoders tokenize for themselves), and
``image_id`` ``str(imgid)``, shared by the captions of one image so that evaluation counts only
a query's own image or captions as relevant and training never uses them as negatives.

``restval`` (COCO: the 30,504 validation-2014 images outside the 5k val and 5k test sets) goes
to training by default (``restval: train``), as VSE++ and SCAN do: their "1k test" and "5k
test" results train on 113,287 images, and leaving restval out makes the numbers not
comparable. ``restval: skip`` drops it (Karpathy's original 82,783 training images).

A few COCO images have six or seven captions; the papers keep the first five, which
``captions_per_image: 5`` reproduces (default: every caption). The data have no classes:
``classes`` is empty and every pair's ``labels`` is ``()``.

A JSON file that does not follow this format (no ``images`` list, a sentence without ``raw``,
an unknown split value, a repeated ``imgid``) stops loading with a
:class:`~daer_core.errors.DataError` naming the file and the entry; missing and undecodable
images are counted and reported like in every file layout (``missing``, ``check=True``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from daer_core.data.files import PathResolver
from daer_core.errors import DataError

from .common import LayoutParams, LoadedPairs, ProblemLog, Row, finish
from .manifest import attach_image_ids

#: the split values of Karpathy's files (``restval`` is mapped by the ``restval`` param)
KARPATHY_SPLITS = ("train", "restval", "val", "test")


class KarpathyParams(LayoutParams):
    """Params of the ``karpathy`` layout."""

    annotations: str | None = Field(
        None, description="the split file (dataset_flickr8k.json / dataset_flickr30k.json / "
        "dataset_coco.json), relative to root; default: the one dataset_*.json in root "
        "(root may also be the file itself)")
    images: str = Field("images", description="folder of the images, relative to root (or "
                        "absolute); an image is images/<filepath>/<filename>, or "
                        "images/<filename> for entries without filepath (Flickr)")
    restval: Literal["train", "skip"] = Field(
        "train", description="COCO's restval images: `train` adds them to training as VSE++ "
        "and SCAN do (113,287 training images); `skip` leaves them out (Karpathy's 82,783)")
    captions_per_image: int | None = Field(
        None, ge=1, description="keep the first N captions of each image (null: all). A few "
        "COCO images have 6-7 captions; the papers keep the first 5")
    max_images: int | None = Field(
        None, ge=1, description="keep only the first N images of each split, in file order "
        "(quick runs; null: all)")


@dataclass
class Entry:
    """One image of the split file, after validation."""

    index: int
    imgid: str
    rel_path: str
    split: str
    captions: list[tuple[str, str]]  # (sentid, raw caption)


def find_annotations(root: Path, name: str | None) -> Path:
    """The split file: ``root/name``, ``root`` itself when it is a file, or the one
    ``dataset_*.json`` in ``root``."""
    if name is not None:
        path = root / name
        if not path.is_file():
            raise DataError(f"karpathy layout: annotations file not found: {path}")
        return path
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"karpathy layout: {root} does not exist")
    found = sorted(root.glob("dataset_*.json"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise DataError(f"karpathy layout: {what} dataset_*.json files in {root}; set "
                        "`annotations` to the split file")
    return found[0]


def read_entries(path: Path) -> tuple[list[Entry], str | None]:
    """Every image entry of the split file, validated, and the file's ``dataset`` name.

    Raises DataError naming the file and the entry index for anything that does not follow
    the format: guessing a missing caption or split would change what is evaluated.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"karpathy layout: cannot read {path} as JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"karpathy layout: {path} has no `images` list (expected Karpathy's "
                        '{"images": [...], "dataset": ...} split file)')
    entries: list[Entry] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(data["images"]):
        entry = _entry(path, i, item)
        if entry.imgid in first_index:
            raise DataError(f"karpathy layout: {path}: images[{i}] repeats imgid "
                            f"{entry.imgid} of images[{first_index[entry.imgid]}]")
        first_index[entry.imgid] = i
        entries.append(entry)
    dataset = data.get("dataset")
    return entries, dataset if isinstance(dataset, str) else None


def _entry(path: Path, i: int, item: Any) -> Entry:
    def bad(what: str) -> DataError:
        return DataError(f"karpathy layout: {path}: images[{i}] {what}")

    if not isinstance(item, dict):
        raise bad("is not an object")
    filename = item.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise bad("has no `filename`")
    imgid = item.get("imgid")
    if isinstance(imgid, bool) or not isinstance(imgid, (int, str)) or str(imgid) == "":
        raise bad(f"({filename}) has no `imgid`")
    split = item.get("split")
    if split not in KARPATHY_SPLITS:
        raise bad(f"({filename}) has split {split!r}; expected one of "
                  f"{', '.join(KARPATHY_SPLITS)}")
    sentences = item.get("sentences")
    if not isinstance(sentences, list):
        raise bad(f"({filename}) has no `sentences` list")
    captions = []
    for k, sent in enumerate(sentences):
        raw = sent.get("raw") if isinstance(sent, dict) else None
        if not isinstance(raw, str):
            raise bad(f"({filename}): sentences[{k}] has no `raw` caption")
        sentid = sent.get("sentid")
        if isinstance(sentid, bool) or not isinstance(sentid, (int, str)) or sentid == "":
            raise bad(f"({filename}): sentences[{k}] has no `sentid`")
        captions.append((str(sentid), raw.strip()))
    filepath = item.get("filepath")
    folder = filepath.strip() if isinstance(filepath, str) else ""
    rel = f"{folder}/{filename.strip()}" if folder else filename.strip()
    return Entry(i, str(imgid), rel, split, captions)


def load_karpathy(params: KarpathyParams, *, check: bool = False) -> LoadedPairs:
    """Read the split file, resolve every image once, one pair per caption; see the module
    docstring."""
    root = Path(params.root)
    path = find_annotations(root, params.annotations)
    entries, dataset_name = read_entries(path)
    problems = ProblemLog()
    images_dir = (root if root.is_dir() else path.parent) / params.images
    if not images_dir.is_dir():
        problems.add("images_missing", f"the image folder {images_dir} does not exist, so no "
                     "image is available (set `images` to the folder holding the images)",
                     severity="error" if params.require_images else "warning")

    kept = _select(entries, params)
    resolver = PathResolver(images_dir)
    rows: list[Row] = []
    image_ids: dict[str, str] = {}
    dropped_captions = 0
    for split, entry in kept:
        image, how = resolver.resolve(entry.rel_path)
        if how in ("normalized", "other-extension"):
            problems.add("path_resolved", "image paths that differ from the file on disk by "
                         "stray spaces or the extension (the file found is used)",
                         [entry.rel_path], "warning")
        captions = entry.captions[:params.captions_per_image]
        dropped_captions += len(entry.captions) - len(captions)
        if not captions:
            problems.add("no_captions", "images without any caption (not used)",
                         [f"{entry.imgid} (images[{entry.index}])"], "warning")
        for sentid, raw in captions:
            rid = f"{entry.imgid}-{sentid}"
            if not raw:
                problems.add("empty_text", "captions with no readable content", [rid],
                             "warning")
            rows.append(Row(rid, raw, image or images_dir / entry.rel_path, (), split,
                            image is not None))
            image_ids[rid] = entry.imgid

    restval = sum(e.split == "restval" for e in entries)
    info: dict[str, Any] = {
        "annotations": str(path),
        "dataset": dataset_name,
        "images_listed": len(entries),
        "restval_images": restval,
        "restval": params.restval,
        "captions_per_image": params.captions_per_image,
        "captions_dropped_by_cap": dropped_captions,
    }
    if params.max_images is not None:
        info["max_images"] = params.max_images
    loaded = finish("karpathy", params, [], rows, problems, info, check=check)
    out = attach_image_ids(loaded, image_ids)
    _count_image_files(out, image_ids)
    return out


def _select(entries: list[Entry], params: KarpathyParams) -> list[tuple[str, Entry]]:
    """``(our split, entry)`` for the entries used: restval mapped or skipped, then at most
    ``max_images`` per split in file order."""
    out: list[tuple[str, Entry]] = []
    per_split: dict[str, int] = {}
    for entry in entries:
        split = entry.split
        if split == "restval":
            if params.restval == "skip":
                continue
            split = "train"
        if params.max_images is not None and per_split.get(split, 0) >= params.max_images:
            continue
        per_split[split] = per_split.get(split, 0) + 1
        out.append((split, entry))
    return out


#: problem code -> the info key counting the distinct image files behind its pair ids
_IMAGE_FILE_COUNTS = {"images_missing": "image_files_missing",
                      "image_unreadable": "image_files_unreadable"}


def _count_image_files(dataset: LoadedPairs, image_ids: dict[str, str]) -> None:
    """Problems list pair ids, one per caption; ``info`` says how many images they are."""
    for problem in dataset.problems:
        key = _IMAGE_FILE_COUNTS.get(problem.code)
        if key is not None and problem.ids:
            dataset.info[key] = len({image_ids.get(i, i) for i in problem.ids})


def make_karpathy(params: KarpathyParams, check: bool = False) -> LoadedPairs:
    """Flickr8k / Flickr30k / COCO in Karpathy's splits: one pair per caption, captions of one
    image share its image_id (instance-level retrieval); no classes."""
    return load_karpathy(params, check=check)
