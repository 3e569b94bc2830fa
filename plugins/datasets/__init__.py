"""Dataset plugins reading real image-text collections from disk.

Layouts (each a ``dataset`` component; details and file expectations in docs/datasets.md):
``wikipedia``, ``pascal-sentence``, ``xmedianet``, ``manifest`` (pairs) and ``features``
(pre-extracted feature matrices). The synthetic ``shapes`` dataset is a separate plugin module
(:mod:`plugins.datasets.shapes`) so that it can be disabled or loaded on its own.
"""
from __future__ import annotations

from registry import hookimpl

from .features import FeaturesParams, make_features
from .manifest import ManifestParams, make_manifest
from .pascal import PascalParams, make_pascal
from .wikipedia import WikipediaParams, make_wikipedia
from .xmedianet import XMediaNetParams, make_xmedianet


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("dataset", "wikipedia", factory=make_wikipedia, params=WikipediaParams,
                 summary="Wikipedia cross-modal set (2866 pairs, 10 classes): standard "
                         "train/test lists, texts as XML, images per category folder.")
    registry.add("dataset", "pascal-sentence", factory=make_pascal, params=PascalParams,
                 summary="Pascal Sentence (1000 pairs, 20 classes, 5 sentences per image), "
                         "seeded per-class 800/100/100 split.")
    registry.add("dataset", "xmedianet", factory=make_xmedianet, params=XMediaNetParams,
                 summary="XMediaNet image and text parts (200 classes) from per-split list "
                         "files of paths and labels.")
    registry.add("dataset", "manifest", factory=make_manifest, params=ManifestParams,
                 summary="Your own pairs from a JSONL or CSV manifest (image, text, labels, "
                         "split); multi-label.")
    registry.add("dataset", "features", factory=make_features, params=FeaturesParams,
                 summary="Pre-extracted features (.mat/.npz/.npy): Wikipedia raw_features.mat "
                         "or train_img/train_txt/train_lab arrays.")
