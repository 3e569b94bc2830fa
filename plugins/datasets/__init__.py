"""Dataset plugins reading real image-text collections from disk.

Layouts (each a ``dataset`` component; details and file expectations in docs/datasets.md):
``wikipedia``, ``pascal-sentence``, ``xmedianet``, ``manifest``, ``karpathy`` (pairs; karpathy
has several captions per image) and ``features`` (pre-extracted feature matrices). The
synthetic ``shapes`` dataset is a separate plugin package (:mod:`plugins.datasets.shapes`) so
that it can be disabled or loaded on its own.
"""
from __future__ import annotations

from registry import hookimpl

from .features import FeaturesParams, make_features
from .karpathy import KarpathyParams, make_karpathy
from .manifest import ManifestParams, make_manifest
from .pascal import PascalParams, make_pascal
from .wikipedia import WikipediaParams, make_wikipedia
from .xmedianet import XMediaNetParams, make_xmedianet


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("dataset", "wikipedia", factory=make_wikipedia, params=WikipediaParams)
    registry.add("dataset", "pascal-sentence", factory=make_pascal, params=PascalParams)
    registry.add("dataset", "xmedianet", factory=make_xmedianet, params=XMediaNetParams)
    registry.add("dataset", "manifest", factory=make_manifest, params=ManifestParams)
    registry.add("dataset", "karpathy", factory=make_karpathy, params=KarpathyParams)
    registry.add("dataset", "features", factory=make_features, params=FeaturesParams)
