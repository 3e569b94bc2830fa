"""Features for the baselines: from a dataset's own matrices or through feature extractors.

A dataset component returns a :class:`FeatureDataset` (matrices per split), a
:class:`PairDataset` (raw images and texts), or an object that is both. For each modality
the benchmark config names a ``feature_extractor``; ``precomputed`` (the default) takes the
dataset's matrix, any other extractor is fitted on the training split's raw items and applied
to the training and evaluation splits. Extracted features are cached on disk by a hash of
the dataset and extractor specs, so a resumed benchmark does not extract them again.

Extractors are fitted once on the whole training split; the per-run resample (see
:class:`~daer_core.benchmark.config.ResampleConfig`) happens afterwards, on the rows.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.splits import carve
from ..errors import ConfigError, DataError
from ..interfaces.data import FeatureDataset, FeatureSplit, PairDataset
from .config import DatasetEntry, ResampleConfig

log = logging.getLogger(__name__)


@dataclass
class BenchmarkData:
    """Aligned training and evaluation features of one dataset entry."""

    train: FeatureSplit
    evaluate: FeatureSplit
    source: str                 # how the features were obtained, for the report


def spec_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able spec (config changes invalidate caches and cells)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


class _LazyImages(Sequence):
    """Decodes a split's images one at a time, so a backbone never holds them all."""

    def __init__(self, records):
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._records[j].load_image() for j in range(*i.indices(len(self)))]
        return self._records[i].load_image()


def _labels_of(records, num_classes: int) -> np.ndarray:
    if any(len(r.labels) != 1 for r in records):
        out = np.zeros((len(records), num_classes), dtype=np.int64)
        for i, r in enumerate(records):
            out[i, list(r.labels)] = 1
        return out
    return np.array([r.labels[0] for r in records], dtype=np.int64)


def _feature_split(ds: Any, split: str, key: str) -> FeatureSplit:
    if not isinstance(ds, FeatureDataset):
        raise ConfigError(f"datasets.{key}: the dataset provides no pre-extracted features;"
                          " set image_features / text_features to extractors (e.g."
                          " backbone-pool and tfidf)")
    try:
        return ds.features(split)
    except KeyError as exc:
        raise DataError(f"datasets.{key}: {exc.args[0] if exc.args else exc}") from None


def _check_aligned(fs: FeatureSplit, key: str, split: str) -> FeatureSplit:
    n = len(fs.labels)
    if fs.image.shape[0] != n or fs.text.shape[0] != n:
        raise DataError(f"datasets.{key} ({split}): {fs.image.shape[0]} image rows,"
                        f" {fs.text.shape[0]} text rows and {n} labels do not line up")
    if n == 0:
        raise DataError(f"datasets.{key}: the {split} split is empty")
    return fs


def load_benchmark_data(key: str, entry: DatasetEntry, eval_split: str, registry,
                        cache_dir: Path | None) -> BenchmarkData:
    """Build the dataset and return its training and evaluation features."""
    ds = registry.create("dataset", entry.dataset.name, entry.dataset.params)
    extractors = {
        "image": registry.create("feature_extractor", entry.image_features.name,
                                 entry.image_features.params),
        "text": registry.create("feature_extractor", entry.text_features.name,
                                entry.text_features.params),
    }
    for modality, ext in extractors.items():
        declared = getattr(ext, "modality", None)
        if declared not in (None, modality):
            ref = entry.image_features if modality == "image" else entry.text_features
            raise ConfigError(f"datasets.{key}.{modality}_features: {ref.name!r} extracts"
                              f" {declared} features, not {modality}")
    precomputed = {m: bool(getattr(e, "uses_dataset_features", False))
                   for m, e in extractors.items()}
    if all(precomputed.values()):
        train = _check_aligned(_feature_split(ds, "train", key), key, "train")
        test = _check_aligned(_feature_split(ds, eval_split, key), key, eval_split)
        return BenchmarkData(train, test, f"{entry.dataset.name} (pre-extracted)")

    cache = None
    if cache_dir is not None:
        digest = spec_hash({"dataset": entry.dataset.model_dump(),
                            "image": entry.image_features.model_dump(),
                            "text": entry.text_features.model_dump(), "split": eval_split})
        cache = cache_dir / f"features-{key}-{digest}.npz"
        if cache.is_file():
            log.info("datasets.%s: reusing extracted features from %s", key, cache)
            return _read_cache(cache, entry)
    if not isinstance(ds, PairDataset):
        raise ConfigError(f"datasets.{key}: feature extractors need raw pairs, but dataset"
                          f" {entry.dataset.name!r} only has pre-extracted features; use"
                          " `precomputed` for both modalities")
    records = {"train": list(ds.split("train")), eval_split: list(ds.split(eval_split))}
    for split, recs in records.items():
        if not recs:
            raise DataError(f"datasets.{key}: the {split} split is empty")
    num_classes = len(ds.classes)
    reason = instance_level_reason(records, num_classes)
    if reason:
        raise ConfigError(
            f"datasets.{key}: {reason}, so it is judged at instance level (Recall@K), and the"
            " baselines are feature-level category methods (mAP over classes, every pair"
            " its own gallery item); remove the baseline methods from this benchmark, or"
            " give them a category-level dataset entry of their own (docs/baselines.md,"
            " instance-level benchmarks)")
    out: dict[str, dict[str, np.ndarray]] = {s: {} for s in records}
    for modality, ext in extractors.items():
        if precomputed[modality]:
            for split in records:
                out[split][modality] = np.asarray(
                    getattr(_feature_split(ds, split, key), modality), dtype=np.float64)
            continue
        items = {s: (_LazyImages(r) if modality == "image" else [x.text for x in r])
                 for s, r in records.items()}
        log.info("datasets.%s: fitting %s features on %d training items", key, modality,
                 len(items["train"]))
        ext.fit(items["train"])
        for split in records:
            out[split][modality] = np.asarray(ext.transform(items[split]), dtype=np.float64)
    splits = {}
    for split, recs in records.items():
        fs = FeatureSplit(out[split]["image"], out[split]["text"],
                          _labels_of(recs, num_classes), [r.id for r in recs])
        splits[split] = _check_aligned(fs, key, split)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"{s}_{part}": getattr(splits[s], part)
                         for s in ("train", eval_split) for part in ("image", "text", "labels")},
                 train_ids=np.array(splits["train"].ids), eval_ids=np.array(splits[eval_split].ids))
        tmp.replace(cache)
    source = (f"{entry.dataset.name} + image: {entry.image_features.name},"
              f" text: {entry.text_features.name}")
    return BenchmarkData(splits["train"], splits[eval_split], source)


def instance_level_reason(splits: dict[str, list], num_classes: int) -> str | None:
    """Why raw pairs are instance-level data (as ``evaluate.protocol: auto`` decides), or
    None: several captions of one image in a split, or no classes at all."""
    if num_classes == 0:
        return "the dataset has no classes"
    for split, recs in splits.items():
        keys = [r.image_key for r in recs]
        if len(set(keys)) < len(keys):
            return (f"its {split} split has several captions per image ({len(keys)} pairs of"
                    f" {len(set(keys))} images)")
    return None


def _read_cache(path: Path, entry: DatasetEntry) -> BenchmarkData:
    with np.load(path) as z:
        names = sorted({k.split("_", 1)[0] for k in z.files if not k.endswith("_ids")})
        eval_split = next(s for s in names if s != "train")
        parts = {s: FeatureSplit(z[f"{s}_image"], z[f"{s}_text"], z[f"{s}_labels"])
                 for s in ("train", eval_split)}
        parts["train"].ids = [str(x) for x in z["train_ids"]]
        parts[eval_split].ids = [str(x) for x in z["eval_ids"]]
    source = (f"{entry.dataset.name} + image: {entry.image_features.name},"
              f" text: {entry.text_features.name} (cached)")
    return BenchmarkData(parts["train"], parts[eval_split], source)


def resample_indices(n: int, policy: ResampleConfig, seed: int) -> np.ndarray:
    """Training rows used by one run (sorted for subsample; with repeats for bootstrap)."""
    rng = np.random.default_rng(seed)
    if policy.mode == "none":
        return np.arange(n)
    if policy.mode == "bootstrap":
        return np.sort(rng.integers(0, n, size=n))
    # the kept part of the seeded carve a trained cell's dataset makes with the same seed
    # (``val_fraction = 1 - fraction``): a baseline of run r fits on exactly the rows DAER-style
    # cells of run r train on, so Table 2's signed-rank test compares paired runs
    kept, _ = carve(list(range(n)), 1.0 - policy.fraction, seed)
    if len(kept) < 2:
        raise ValueError(f"resample keeps {len(kept)} of {n} training rows; at least 2 needed")
    return np.asarray(kept, dtype=np.int64)
