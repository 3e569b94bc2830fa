"""What a gallery is made of, and the three places one can come from.

``daer index --gallery SPEC`` accepts

* a split of the run's own dataset — ``test``, ``val``, ``train`` or ``all`` (also
  ``split:test``): the pairs the run was evaluated on, with their texts, images and labels;
* another dataset configured like a training dataset — ``dataset:NAME[:SPLIT]`` with
  ``--gallery-set key=value`` params (for ``shapes``: more pairs or another seed). When NAME is
  the run's own dataset its params are the starting point, so class names stay the same;
* a folder of images (searched recursively; ids are the paths relative to the folder) — an
  image-only gallery: text queries rank it, image queries have nothing to rank;
* a manifest file (``.jsonl`` / ``.csv`` / ``.json``, the ``manifest`` dataset layout): every
  row of every split, with its text, image and labels.

Items are kept as :class:`GalleryItem` — one per pair or image. An item with an image is
searchable by text queries; one with a text by image queries. An index stores each source's
spec; :func:`source_items` re-creates its items from it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config.loading import apply_overrides
from ..errors import ConfigError, DataError
from ..interfaces.data import SPLITS, ImageRef, PairDataset
from .storage import SearchIndexError

#: file name endings treated as images when a folder is indexed (the content still decides
#: whether an image decodes: files that do not are skipped and reported)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
MANIFEST_SUFFIXES = (".jsonl", ".csv", ".json")
SPLIT_WORDS = (*SPLITS, "all")


@dataclass(frozen=True)
class GalleryItem:
    """One gallery entry: a pair (text + image), a lone image, or a lone caption (a further
    caption of an image listed before it).

    ``labels`` are class *names* (not indices) because galleries from different sources are
    mixed in one index and indices only mean something within one dataset.
    """

    id: str
    text: str | None
    image: ImageRef | None
    labels: tuple[str, ...] = ()

    @property
    def path(self) -> str | None:
        """The image file, when the image is a file (drawn images have none)."""
        if self.image is None or callable(self.image):
            return None
        return str(self.image)

    def meta(self) -> dict[str, Any]:
        """What the index stores about the item besides its vectors."""
        return {"id": self.id, "text": self.text, "labels": list(self.labels),
                "path": self.path, "has_image": self.image is not None}


@dataclass
class GallerySource:
    """Resolved ``--gallery``: a description that identifies it again, and its items."""

    spec: dict[str, Any]
    items: list[GalleryItem] = field(default_factory=list)

    @property
    def key(self) -> str:
        """A short stable hash of the spec: the same source given twice is recognised."""
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:16]


def items_from_dataset(dataset: PairDataset, split: str, prefix: str = "") -> list[GalleryItem]:
    """Every pair of ``split`` (or of all splits, in train/val/test order) as gallery items.

    An image with several captions is listed once: its first pair carries it, its other
    captions become caption-only items, so an image query never gets one picture's captions
    as separate 'images' and a text query never sees the same picture five times."""
    splits = SPLITS if split == "all" else (split,)
    out: list[GalleryItem] = []
    seen: set[str] = set()
    for s in splits:
        for rec in dataset.split(s):
            repeat = rec.image_key in seen
            seen.add(rec.image_key)
            out.append(GalleryItem(id=prefix + rec.id, text=rec.text,
                                   image=None if repeat else rec.image,
                                   labels=tuple(dataset.classes[i] for i in rec.labels)))
    return out


def items_from_folder(folder: Path, prefix: str = "") -> list[GalleryItem]:
    """Image files under ``folder`` in a stable (sorted) order; ids are relative paths."""
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder"
                        f" or below it")
    return [GalleryItem(id=prefix + p.relative_to(folder).as_posix(), text=None,
                        image=str(p.resolve())) for p in files]


def resolve_gallery(spec: str, run_config, *, params: Sequence[str] = (), prefix: str = "",
                    registry=None) -> GallerySource:
    """Turn a ``--gallery`` argument into items.

    ``run_config`` is the run's resolved :class:`~daer_core.config.RunConfig` (its dataset is
    the default source); ``params`` are ``key=value`` dataset params for ``dataset:NAME``.
    Raises :class:`ConfigError` for a spec that names nothing and :class:`DataError` for a
    source that cannot be read.
    """
    from registry import get_registry
    registry = get_registry(registry)
    text = spec.strip()
    if not text:
        raise ConfigError("--gallery is empty; give a split (test), dataset:NAME[:SPLIT], a"
                          " folder of images or a manifest file")
    split_name = text[6:] if text.startswith("split:") else text
    if split_name in SPLIT_WORDS and not Path(text).exists():
        if params:
            raise ConfigError("--gallery-set only applies to --gallery dataset:NAME")
        if run_config.dataset is None:
            raise ConfigError(f"--gallery {text}: the run has no dataset configured")
        ds_name, ds_params = run_config.dataset.name, dict(run_config.dataset.params)
        dataset = registry.create("dataset", ds_name, ds_params)
        return GallerySource({"kind": "split", "dataset": ds_name, "params": _plain(ds_params),
                              "split": split_name, "prefix": prefix},
                             items_from_dataset(dataset, split_name, prefix))
    if text.startswith("dataset:"):
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise ConfigError(f"--gallery {text}: expected dataset:NAME or dataset:NAME:SPLIT")
        ds_name, split = parts[1], parts[2] if len(parts) == 3 else "all"
        if split not in SPLIT_WORDS:
            raise ConfigError(f"--gallery {text}: unknown split {split!r}; use one of"
                              f" {', '.join(SPLIT_WORDS)}")
        base: dict[str, Any] = {}
        if run_config.dataset is not None and run_config.dataset.name == ds_name:
            base = dict(run_config.dataset.params)
        ds_params = apply_overrides(base, params)
        dataset = registry.create("dataset", ds_name, ds_params)
        return GallerySource({"kind": "dataset", "dataset": ds_name, "params": _plain(ds_params),
                              "split": split, "prefix": prefix},
                             items_from_dataset(dataset, split, prefix))
    if params:
        raise ConfigError("--gallery-set only applies to --gallery dataset:NAME")
    path = Path(text)
    if path.is_dir():
        return GallerySource({"kind": "folder", "path": str(path.resolve()), "prefix": prefix},
                             items_from_folder(path, prefix))
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise ConfigError(f"--gallery {path}: a file must be a manifest"
                              f" ({', '.join(MANIFEST_SUFFIXES)}); for images give their folder")
        dataset = registry.create("dataset", "manifest", {"root": str(path.resolve())})
        return GallerySource({"kind": "manifest", "path": str(path.resolve()), "prefix": prefix},
                             items_from_dataset(dataset, "all", prefix))
    raise ConfigError(f"--gallery {text}: no such file or folder, and not a split"
                      f" ({', '.join(SPLIT_WORDS)}) or dataset:NAME[:SPLIT]")


def source_items(spec: dict[str, Any], registry=None) -> list[GalleryItem]:
    """Re-create the items of a stored job source (to draw images that have no file)."""
    from registry import get_registry
    registry = get_registry(registry)
    kind = spec.get("kind")
    prefix = spec.get("prefix", "")
    if kind in ("split", "dataset"):
        dataset = registry.create("dataset", spec["dataset"], spec["params"])
        return items_from_dataset(dataset, spec["split"], prefix)
    if kind == "folder":
        return items_from_folder(Path(spec["path"]), prefix)
    if kind == "manifest":
        dataset = registry.create("dataset", "manifest", {"root": spec["path"]})
        return items_from_dataset(dataset, "all", prefix)
    raise SearchIndexError(f"unknown gallery source kind {kind!r}")

def _plain(value: Any) -> Any:
    """Params as JSON-ready values (tuples become lists), so specs compare after a reload."""
    return json.loads(json.dumps(value, default=str))
