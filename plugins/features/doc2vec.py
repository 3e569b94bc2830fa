"""Paragraph vectors (gensim Doc2Vec, Le & Mikolov 2014) as text features."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from daer_core.interfaces.methods import Configured, FeatureExtractor
from registry import Params

from .textwords import check_texts, words


class Doc2VecParams(Params):
    vector_size: int = Field(100, ge=1, description="feature dimension")
    mode: Literal["dm", "dbow"] = Field("dm", description="distributed memory or distributed"
                                                          " bag of words")
    window: int = Field(5, ge=1, description="context window (dm)")
    min_count: int = Field(2, ge=1, description="ignore rarer words")
    epochs: int = Field(20, ge=1, description="training epochs")
    infer_epochs: int | None = Field(None, ge=1, description="epochs of inference per text;"
                                                             " default: epochs")
    seed: int = Field(0, description="seed of training and inference")


class Doc2VecFeatures(Configured, FeatureExtractor):
    """Paragraph vectors of texts (gensim Doc2Vec).

    Every text (training ones too) is embedded by ``infer_vector``, so train and test rows
    come from the same procedure. Training uses one worker thread for reproducibility."""

    modality = "text"

    params_model = Doc2VecParams

    def fit(self, items: Sequence[str]) -> "Doc2VecFeatures":
        from gensim.models.doc2vec import Doc2Vec, TaggedDocument

        docs = [TaggedDocument(words(t), [i])
                for i, t in enumerate(check_texts(items, "doc2vec"))]
        min_count = self.min_count if len(docs) >= self.min_count else 1
        self.model_ = Doc2Vec(vector_size=self.vector_size, dm=1 if self.mode == "dm" else 0,
                              window=self.window, min_count=min_count, epochs=self.epochs,
                              seed=self.seed, workers=1)
        self.model_.build_vocab(docs)
        if len(self.model_.wv) == 0:
            raise ValueError(f"doc2vec: no word occurs {min_count}+ times in the"
                             f" {len(docs)} training texts")
        self.model_.train(docs, total_examples=len(docs), epochs=self.epochs)
        return self

    def transform(self, items: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("doc2vec: call fit() on the training texts first")
        epochs = self.infer_epochs or self.epochs
        rows = []
        for text in check_texts(items, "doc2vec"):
            self.model_.random.seed(self.seed)          # same text -> same vector
            rows.append(self.model_.infer_vector(words(text), epochs=epochs))
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.vector_size)
