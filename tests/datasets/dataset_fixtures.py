"""Helpers shared by the dataset tests: tiny image files in any format under any name."""
from __future__ import annotations

from pathlib import Path

from PIL import Image


def write_image(path: Path, fmt: str = "JPEG", colour=(200, 30, 30), size=(8, 8)) -> Path:
    """A tiny solid image saved in ``fmt`` whatever ``path``'s extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def split_ids(dataset) -> dict[str, list[str]]:
    """The pair ids of each split, in order: what the trainer records in ``split.json``."""
    return {s: [r.id for r in dataset.split(s)] for s in ("train", "val", "test")}
