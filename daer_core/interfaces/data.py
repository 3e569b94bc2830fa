"""Dataset interfaces: labelled image-text pairs, pre-extracted features, and data reports.

A dataset component's factory returns either a :class:`PairDataset` (raw images and texts,
used by the trainer and by feature extractors) or a :class:`FeatureDataset` (fixed vectors,
used by baselines). A factory that reads files may accept the keyword ``check=True``: it
then collects problems in its report instead of raising :class:`~daer_core.errors.DataError`
and may run deeper checks (decoding every image) — ``daer data check`` passes it when accepted. Loading problems are never silent: they are collected in a
:class:`DataReport` that ``daer data check`` prints and the trainer writes to the run log.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")
SplitName = Literal["train", "val", "test"]

#: An image is either a file (format detected from its content) or a callable that draws it.
ImageRef = Union[str, Path, Callable[[], Any]]


@dataclass(frozen=True)
class PairRecord:
    """One image-text pair. ``labels`` are 0-based class indices (several for multi-label)."""

    id: str
    #: the text, or its feature vector for a feature-level pipeline
    text: str | np.ndarray
    #: the image file or drawing, or its feature vector for a feature-level pipeline
    image: ImageRef | np.ndarray
    labels: tuple[int, ...]
    #: the image this pair's caption describes: pairs that share it are several captions of
    #: one image (Flickr30k, COCO). ``None`` = the pair's own image (one caption per image).
    #: Instance-level retrieval counts only a query's own image or captions as relevant, and
    #: training never treats two captions of one image as each other's negatives.
    image_id: str | None = None

    @property
    def image_key(self) -> str:
        """The image's identity: ``image_id``, or the pair's ``id`` when it has none."""
        return self.image_id if self.image_id is not None else self.id

    def load_image(self):
        """Decode the image as RGB PIL, detecting the format from the bytes, not the name
        (a feature vector is returned as it is)."""
        if isinstance(self.image, np.ndarray):
            return self.image
        from ..data.images import load_rgb
        return load_rgb(self.image)


@dataclass
class Problem:
    """Something wrong with the data: a stable ``code``, a readable message, affected ids."""

    code: str
    message: str
    ids: list[str] = field(default_factory=list)
    severity: Literal["error", "warning"] = "error"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "ids": list(self.ids), "count": len(self.ids)}


@dataclass
class DataReport:
    """What ``daer data check`` shows: counts per split and class, and every problem found."""

    layout: str
    root: str
    classes: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """True when nothing of severity ``error`` was found."""
        return not any(p.severity == "error" for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "root": self.root, "usable": self.usable,
                "classes": list(self.classes), "num_classes": len(self.classes),
                "counts": dict(self.counts), "class_counts": self.class_counts,
                "problems": [p.as_dict() for p in self.problems], "info": self.info}


def image_counts(dataset: "PairDataset") -> dict[str, int]:
    """Distinct images per split when some image has several captions, else ``{}`` (one
    caption per image: the pair counts say it all)."""
    out: dict[str, int] = {}
    for s in SPLITS:
        records = dataset.split(s)
        out[s] = len({r.image_key for r in records})
    shared = any(out[s] < len(dataset.split(s)) for s in SPLITS)
    return out if shared else {}


class PairDataset(ABC):
    """Labelled image-text pairs in train / val / test splits."""

    #: class names, index = label
    classes: list[str]
    #: the size images are natively drawn at, if the dataset has one (e.g. synthetic data);
    #: image encoders with ``size: auto`` use it instead of their paper default.
    native_image_size: int | None = None

    @abstractmethod
    def split(self, name: SplitName) -> Sequence[PairRecord]:
        """The pairs of one split, in a stable order."""

    def report(self) -> DataReport:
        """Counts and problems found while loading; default: counts only."""
        rep = DataReport(layout=type(self).__name__, root="", classes=list(self.classes))
        for s in SPLITS:
            records = self.split(s)
            rep.counts[s] = len(records)
            per: dict[str, int] = {}
            for r in records:
                for lab in r.labels:
                    per[self.classes[lab]] = per.get(self.classes[lab], 0) + 1
            rep.class_counts[s] = per
        images = image_counts(self)
        if images:
            rep.info["images"] = images
        return rep


@dataclass
class FeatureSplit:
    """Aligned feature matrices of one split. ``labels``: ``(N,)`` ints or ``(N, C)`` multi-hot."""

    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    ids: list[str] | None = None


class FeatureDataset(ABC):
    """Pre-extracted image and text features per split (for baselines and feature heads)."""

    classes: list[str]

    @abstractmethod
    def features(self, split: SplitName) -> FeatureSplit: ...

    def report(self) -> DataReport:
        rep = DataReport(layout=type(self).__name__, root="", classes=list(self.classes))
        for s in SPLITS:
            try:
                rep.counts[s] = len(self.features(s).labels)
            except KeyError:
                rep.counts[s] = 0
        return rep
