"""Image ids of the ``manifest`` layout: rows that share an ``image_id`` are several captions
of one image (instance-level retrieval, Flickr30k/COCO style).

Split out of :mod:`plugins.datasets.manifest` so that reading rows and grouping them by image
are one job each: this module checks that the rows of one image agree (one file, one split),
splits unsplit rows an image at a time, and puts the ids onto the loaded records.
:func:`attach_image_ids` is also used by the ``karpathy`` layout; it stays importable from
:mod:`plugins.datasets.manifest`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from daer_core.data.splits import partition, sizes_from_fractions
from daer_core.interfaces.data import SPLITS, image_counts

from .common import LoadedPairs, ProblemLog, Row

if TYPE_CHECKING:  # only for annotations: manifest imports this module
    from .manifest import ManifestParams


@dataclass
class _Member:
    """One row of an image id: where it is, the image it names (as written), its split
    (None: the row gives none)."""

    where: str
    image: str
    row: Row
    split: str | None


def _image_id(row: dict[str, Any]) -> str | None:
    """The row's ``image_id`` (None when absent or empty: the row's own image)."""
    value = row.get("image_id")
    if value is None or isinstance(value, (dict, list)):
        return None
    value = str(value).strip()
    return value or None


def _same_file(path: Path) -> str:
    """A comparison key for an image path: ``img/./a.jpg`` and ``img/a.jpg`` are one file."""
    return os.path.normcase(os.path.normpath(str(path)))


def _lines(members: list[_Member]) -> str:
    return ", ".join(m.where for m in members)


def _check_shared_images(shared: dict[str, list[_Member]], problems: ProblemLog) -> None:
    """Rows of one image id must name one image file and lie in one split (see the docstring
    of :mod:`plugins.datasets.manifest` for why); each conflict is an error naming the id and
    its rows."""
    for image_id, members in shared.items():
        by_file: dict[str, list[_Member]] = {}
        for m in members:
            by_file.setdefault(_same_file(m.row.image), []).append(m)
        if len(by_file) > 1:
            detail = "; ".join(f"{ms[0].image}: {_lines(ms)}" for ms in by_file.values())
            problems.add("image_id_file_conflict", "image ids whose rows name different "
                         "image files (rows sharing an image_id must show the same image)",
                         [f"{image_id} ({detail})"])
        by_split: dict[str | None, list[_Member]] = {}
        for m in members:
            by_split.setdefault(m.split, []).append(m)
        if len(by_split) > 1:
            detail = "; ".join(f"{split or 'no split'}: {_lines(ms)}"
                               for split, ms in by_split.items())
            problems.add("image_id_split_conflict", "image ids whose rows lie in different "
                         "splits (captions of one image on both sides of the train/test line "
                         "leak test images into training)", [f"{image_id} ({detail})"])


def _seeded_split(unsplit: list[Row], image_ids: Mapping[str, str],
                  params: ManifestParams) -> None:
    """Give rows without a split one by the seeded ``split_fractions``, an image at a time:
    the captions of one image always land in the same split. Without image ids every row is
    its own unit, so the split is the one earlier versions made."""
    units: dict[tuple[str, str], list[Row]] = {}
    for r in unsplit:
        key = ("image", image_ids[r.id]) if r.id in image_ids else ("row", r.id)
        units.setdefault(key, []).append(r)
    groups = list(units.values())
    sizes = sizes_from_fractions(len(groups), params.split_fractions)
    for name, part in zip(("train", "val", "test"), partition(groups, sizes, params.seed)):
        for group in part:
            for r in group:
                r.split = name


def attach_image_ids(dataset: LoadedPairs, image_ids: Mapping[str, str]) -> LoadedPairs:
    """``dataset`` with each pair's ``image_id`` set from ``image_ids`` (pair id -> image id;
    pairs not in it keep their own image).

    :func:`~plugins.datasets.common.finish` builds records without image ids, and
    ``LoadedPairs.report`` replaces the base report's ``info`` (where the per-split image
    counts go) with the layout's own, so the counts are put into ``info`` here.
    """
    splits = {s: [replace(r, image_id=image_ids.get(r.id)) for r in dataset.split(s)]
              for s in SPLITS}
    out = LoadedPairs(dataset.layout, dataset.root, dataset.classes, splits, dataset.problems,
                      dataset.info, dataset.native_image_size)
    images = image_counts(out)
    if images:
        out.info["images"] = images
    return out
