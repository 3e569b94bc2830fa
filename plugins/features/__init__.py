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
                 params=BackboneParams,
                 summary="Pooled last feature map of a frozen torchvision/timm CNN; weights"
                         " from a local file only (random init, with a warning, if none).")
    registry.add("feature_extractor", "tfidf", factory=TfidfFeatures,
                 params=TfidfParams, summary="TF-IDF text vectors (scikit-learn).")
    registry.add("feature_extractor", "lda", factory=LdaFeatures, params=LdaParams,
                 summary="LDA topic proportions of texts (gensim).")
    registry.add("feature_extractor", "doc2vec", factory=Doc2VecFeatures,
                 params=Doc2VecParams, summary="Paragraph vectors of texts (gensim Doc2Vec).")
    registry.add("feature_extractor", "precomputed", factory=PrecomputedFeatures,
                 params=PrecomputedParams,
                 summary="Use the dataset's own pre-extracted features for this modality.")
