"""Dataset plugins reading real image-text collections from disk.

Layouts (each a ``dataset`` component; see docs/datasets.md): ``wikipedia`` and
``features`` (pre-extracted feature matrices).
The synthetic ``shapes`` dataset is a separate plugin module (:mod:`plugins.datasets.shapes`)
so that it can be disabled or loaded on its own.
"""
from __future__ import annotations

from registry import hookimpl

from .features import FeaturesParams, make_features
from .wikipedia import WikipediaParams, make_wikipedia


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("dataset", "wikipedia", factory=make_wikipedia, params=WikipediaParams,
                 summary="Wikipedia cross-modal set (2866 pairs, 10 classes): standard "
                         "train/test lists, texts as XML, images per category folder.")
    registry.add("dataset", "features", factory=make_features, params=FeaturesParams,
                 summary="Pre-extracted features (.mat/.npz/.npy): Wikipedia raw_features.mat "
                         "or train_img/train_txt/train_lab arrays.")
