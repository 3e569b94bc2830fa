"""Gallery indexes and two-stage search: ANN candidates in a first-stage space, then exact
relation-network re-ranking (``daer index``, ``daer search --index``, ``daer serve``).

See docs/search.md for the design, the measured choice of first stage and the figures of
``benchmarks/search_scale.py``. Needs the ``search`` extra (faiss-cpu).
"""
from .build import (REFINE_CHOICES, index_gallery, refine_on_gallery, teacher_logits,
                    training_embeddings)
from .first_stage import DEFAULT_METHOD, METHODS, fit_first_stage
from .gallery import GalleryItem, GallerySource, resolve_gallery
from .index import BuildReport, GalleryIndex, SearchIndexError, source_items
from .scoring import PairScorer
from .searcher import GallerySearcher, Hit, SearchResult, default_candidates

__all__ = [
    "BuildReport", "DEFAULT_METHOD", "REFINE_CHOICES", "GalleryIndex", "GalleryItem", "GallerySearcher",
    "GallerySource", "Hit", "METHODS", "PairScorer", "SearchIndexError", "SearchResult",
    "default_candidates", "fit_first_stage", "index_gallery", "refine_on_gallery",
    "resolve_gallery", "source_items", "teacher_logits", "training_embeddings",
]
