"""Interfaces for baseline methods and feature extractors (scikit-learn shaped).

Constructor arguments are the whole configuration (validated by the component's params model,
see :class:`Configured`); ``fit`` learns and stores what it learned
in attributes ending in ``_``; ``transform_*`` are pure. Retrieval ranks by ``similarity`` in the
common space: cosine unless the method defines its own measure.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
from pydantic import BaseModel


class Configured:
    """Constructor of scikit-learn shaped components: a params model, keywords, or both.

    ``CCA(CCAParams(reg=1e-3))``, ``CCA(reg=1e-3)`` and the registry's ``factory(params)``
    (the class itself) build the same object. Every value goes through :attr:`params_model`,
    the one place the defaults are written, so a keyword the model does not know, or a value
    it rejects, fails at construction with the field's name. As scikit-learn does, each value
    is then an attribute of the same name (``cca.reg``); ``params`` holds the whole model.
    """

    #: the component's params model (a ``registry.Params``)
    params_model: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel | None = None, **overrides: Any):
        given = params.model_dump() if params is not None else {}
        self.params = self.params_model.model_validate({**given, **overrides})
        for name in self.params_model.model_fields:
            setattr(self, name, getattr(self.params, name))


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

    def similarity(self, image_common: np.ndarray, text_common: np.ndarray) -> np.ndarray:
        """``(texts, images)`` retrieval scores of common-space vectors, higher = closer.

        Default: cosine similarity. A method whose space has its own measure (e.g. a distance
        between class-probability vectors, ``sm`` / ``scm``) overrides this.
        """
        def unit(a: np.ndarray) -> np.ndarray:
            a = np.asarray(a, dtype=np.float64)
            norm = np.linalg.norm(a, axis=1, keepdims=True)
            return a / np.where(norm > 0, norm, 1.0)
        return unit(text_common) @ unit(image_common).T


class FeatureExtractor(ABC):
    """Turns raw images (PIL) or texts (str) into fixed-length vectors for baselines."""

    modality: Literal["image", "text"]

    def fit(self, items: Sequence[Any]) -> "FeatureExtractor":
        """Learn from training items (vocabulary, topics, ...). Default: nothing to learn."""
        return self

    @abstractmethod
    def transform(self, items: Sequence[Any]) -> np.ndarray:
        """``(N, D)`` float features, one row per item."""
