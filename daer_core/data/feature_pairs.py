"""Feature datasets as pairs, so that every method can train on published features.

A :class:`~daer_core.interfaces.FeatureDataset` holds aligned image and text feature
matrices per split; :func:`feature_records` turns one split into
:class:`~daer_core.interfaces.PairRecord` objects whose ``image`` and ``text`` are the two
vectors. Encoders with ``inputs = "features"`` read them (``plugins/vectors``); the trainer,
the loader, validation and evaluation then work exactly as for raw pairs.
"""
from __future__ import annotations

import numpy as np

from ..interfaces import FeatureDataset, PairRecord


def _labels(row: np.ndarray) -> tuple[int, ...]:
    if row.ndim == 0:
        return (int(row),)
    return tuple(int(i) for i in np.flatnonzero(row))


def feature_records(dataset: FeatureDataset, split: str) -> list[PairRecord]:
    """The records of one split (empty when the dataset has no such split)."""
    try:
        part = dataset.features(split)
    except KeyError:
        return []
    image = np.asarray(part.image, dtype=np.float32)
    text = np.asarray(part.text, dtype=np.float32)
    labels = np.asarray(part.labels)
    ids = part.ids or [f"{split}-{i:06d}" for i in range(len(labels))]
    return [PairRecord(id=str(ids[i]), text=text[i], image=image[i], labels=_labels(labels[i]))
            for i in range(len(labels))]
