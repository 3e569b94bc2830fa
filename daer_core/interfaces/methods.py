"""Interfaces for baseline methods and feature extractors (scikit-learn shaped).

Constructor arguments are the whole configuration; ``fit`` learns and stores what it learned
in attributes ending in ``_``; ``transform_*`` are pure. Retrieval ranks by cosine similarity
in the common space.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal, Sequence

import numpy as np


class CrossModalMethod(ABC):
    """A baseline that learns a common space from paired image and text features."""

    @abstractmethod
    def fit(self, image_feats: np.ndarray, text_feats: np.ndarray,
            labels: np.ndarray) -> "CrossModalMethod":
        """Learn projections. ``labels``: ``(N,)`` class ids or ``(N, C)`` multi-hot."""

    @abstractmethod
    def transform_image(self, image_feats: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def transform_text(self, text_feats: np.ndarray) -> np.ndarray: ...


class FeatureExtractor(ABC):
    """Turns raw images (PIL) or texts (str) into fixed-length vectors for baselines."""

    modality: Literal["image", "text"]

    def fit(self, items: Sequence[Any]) -> "FeatureExtractor":
        """Learn from training items (vocabulary, topics, ...). Default: nothing to learn."""
        return self

    @abstractmethod
    def transform(self, items: Sequence[Any]) -> np.ndarray:
        """``(N, D)`` float features, one row per item."""
