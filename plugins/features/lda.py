"""LDA topic proportions (gensim), like the 10-d text features published with Wikipedia."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from pydantic import Field

from daer_core.interfaces.methods import Configured, FeatureExtractor
from registry import Params

from .textwords import check_texts, words

log = logging.getLogger(__name__)


class LdaParams(Params):
    num_topics: int = Field(10, ge=1, description="topics = feature dimension")
    passes: int = Field(10, ge=1, description="passes over the training corpus")
    iterations: int = Field(100, ge=1, description="inference iterations per document")
    no_below: int = Field(2, ge=1, description="drop words in fewer training documents")
    no_above: float = Field(0.5, gt=0.0, le=1.0, description="drop words in a larger share of"
                                                             " training documents")
    keep_n: int = Field(20000, ge=1, description="vocabulary cap (most frequent words)")
    seed: int = Field(0, description="seed of training and of per-document inference")


class LdaFeatures(Configured, FeatureExtractor):
    """LDA topic proportions of texts (gensim).

    Topic proportions per text (rows sum to one).

    Inference is stochastic in gensim, so the model's random state is reset to ``seed``
    before every ``transform``: the same text always gets the same vector.
    """

    modality = "text"

    params_model = LdaParams

    def fit(self, items: Sequence[str]) -> "LdaFeatures":
        from gensim.corpora import Dictionary
        from gensim.models import LdaModel

        docs = [words(t) for t in check_texts(items, "lda")]
        vocab = Dictionary(docs)
        no_below = self.no_below if len(docs) >= self.no_below else 1
        vocab.filter_extremes(no_below=no_below, no_above=self.no_above, keep_n=self.keep_n)
        if len(vocab) == 0:
            raise ValueError(f"lda: no vocabulary left from {len(docs)} training texts after"
                             f" filtering (no_below={no_below}, no_above={self.no_above})")
        corpus = [vocab.doc2bow(d) for d in docs]
        empty = sum(1 for b in corpus if not b)
        if empty:
            log.warning("lda: %d of %d training texts have no in-vocabulary word", empty,
                        len(corpus))
        self.dictionary_ = vocab
        self.model_ = LdaModel(corpus, id2word=vocab, num_topics=self.num_topics,
                               passes=self.passes, iterations=self.iterations,
                               random_state=self.seed)
        return self

    def transform(self, items: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("lda: call fit() on the training texts first")
        self.model_.random_state = np.random.RandomState(self.seed)
        out = np.zeros((0, self.num_topics))
        rows = []
        for text in check_texts(items, "lda"):
            row = np.zeros(self.num_topics)
            bow = self.dictionary_.doc2bow(words(text))
            for topic, p in self.model_.get_document_topics(bow, minimum_probability=0.0):
                row[topic] = p
            rows.append(row)
        return np.vstack(rows) if rows else out
