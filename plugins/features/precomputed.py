"""``precomputed``: use the features the dataset itself provides (a FeatureDataset).

It transforms nothing: the benchmark runner sees ``uses_dataset_features`` and takes the
image or text matrix of the dataset's :class:`~daer_core.interfaces.data.FeatureSplit`
instead of calling ``transform``. Mixing is allowed: precomputed image features with TF-IDF
computed from the dataset's raw texts, for instance.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from daer_core.interfaces.methods import Configured, FeatureExtractor
from registry import Params


class PrecomputedParams(Params):
    modality: Literal["image", "text"] | None = Field(
        None, description="restrict to one modality; default: whichever slot it is used in")


class PrecomputedFeatures(Configured, FeatureExtractor):
    """Use the dataset's own pre-extracted features for this modality."""
    uses_dataset_features = True

    params_model = PrecomputedParams

    def transform(self, items: Sequence) -> np.ndarray:
        """Pass through rows that are already numbers; raw images or texts are an error."""
        try:
            arr = np.asarray(items, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != 2:
            raise TypeError("precomputed: takes the dataset's own feature matrix; raw images"
                            " or texts need an extractor such as backbone-pool or tfidf")
        return arr
