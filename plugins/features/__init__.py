"""Feature extractors for the baselines (kind ``feature_extractor``).

Baselines learn from fixed vectors. For datasets that ship raw images and texts these turn
them into vectors: pooled features of a frozen CNN for images; TF-IDF, LDA topics or doc2vec
for texts. ``precomputed`` means "use the dataset's own features". See docs/baselines.md.
"""
from __future__ import annotations

from registry import hookimpl

from .backbone import BackboneParams, BackbonePoolFeatures
from .doc2vec import Doc2VecFeatures, Doc2VecParams
from .lda import LdaFeatures, LdaParams
from .precomputed import PrecomputedFeatures, PrecomputedParams
from .tfidf import TfidfFeatures, TfidfParams

__all__ = ["BackbonePoolFeatures", "TfidfFeatures", "LdaFeatures", "Doc2VecFeatures",
           "PrecomputedFeatures"]


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("feature_extractor", "backbone-pool", factory=BackbonePoolFeatures,
                 params=BackboneParams)
    registry.add("feature_extractor", "tfidf", factory=TfidfFeatures, params=TfidfParams)
    registry.add("feature_extractor", "lda", factory=LdaFeatures, params=LdaParams)
    registry.add("feature_extractor", "doc2vec", factory=Doc2VecFeatures, params=Doc2VecParams)
    registry.add("feature_extractor", "precomputed", factory=PrecomputedFeatures,
                 params=PrecomputedParams)
