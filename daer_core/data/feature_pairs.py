"""Feature datasets as pairs, so that every method can train on published features.

A :class:`~daer_core.interfaces.FeatureDataset` holds aligned image and text feature
matrices per split; :func:`feature_records` turns one split into
:class:`~daer_core.interfaces.PairRecord` objects whose ``image`` and ``text`` are the two
vectors. Encoders with ``inputs = "features"`` read them (``plugins/vectors``); the trainer,
the loader, validation and evaluation then work exactly as for raw pairs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..interfaces import FeatureDataset, PairRecord


def vectors_as_batch(vectors: Sequence[Any]) -> torch.Tensor:
    """Feature vectors (arrays or tensors) as one ``(B, D)`` float32 tensor: what a
    features text encoder's ``prepare`` returns."""
    return torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in vectors]))


class VectorToTensor:
    """A feature vector as a float32 tensor: the image transform of features encoders (a
    class, so loader workers can receive it)."""

    def __call__(self, vector: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(vector, dtype=np.float32))


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
