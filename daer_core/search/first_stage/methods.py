"""The table of first-stage methods (name -> class), and building or reopening one by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, DataError
from ..scoring import PairScorer
from .base import FirstStage
from .closed_form import CosineStage, DistilledStage, EmbeddingStage, HalvesStage, TaylorStage
from .learned import LearnedStage

#: every method, in the order the docs and ``benchmarks/search_scale.py`` list them
STAGES: dict[str, type[FirstStage]] = {
    cls.name: cls for cls in (LearnedStage, DistilledStage, TaylorStage, HalvesStage,
                              EmbeddingStage, CosineStage)}
METHODS: tuple[str, ...] = tuple(STAGES)
DEFAULT_METHOD = "learned"


def _stage_class(method) -> type[FirstStage] | None:
    return STAGES.get(method) if isinstance(method, str) else None


def fit_first_stage(method: str, scorer: PairScorer, text_emb: torch.Tensor | None,
                    image_emb: torch.Tensor | None, **options) -> FirstStage:
    """Build the named first stage; ``text_emb``/``image_emb`` are the training split's
    embeddings (used by the methods that learn something from them)."""
    cls = _stage_class(method)
    if cls is None:
        raise ConfigError(f"unknown first stage {method!r}; choose one of {', '.join(METHODS)}")
    if cls.fitted and (text_emb is None or image_emb is None):
        raise ConfigError(f"first stage {method!r} is fitted on training embeddings; none given")
    return cls.create(scorer, text_emb, image_emb, **options)


def load_first_stage(path: Path, scorer: PairScorer) -> FirstStage:
    """Reopen a first stage saved with :meth:`FirstStage.save`."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the first stage: {exc}") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        method = meta["method"]
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: no readable 'meta' entry: {exc}") from None
    cls = _stage_class(method)
    if cls is None:
        raise DataError(f"{path}: unknown first stage {method!r}")
    try:
        return cls.from_arrays(scorer, arrays, meta)
    except KeyError as exc:
        raise DataError(f"{path}: first stage {method!r} lacks the array {exc}") from None
