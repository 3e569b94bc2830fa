"""TF-IDF text features (scikit-learn), the kind of 1000-d vector published with Wikipedia."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from daer_core.interfaces.methods import Configured, FeatureExtractor
from registry import Params

from .textwords import check_texts


class TfidfParams(Params):
    max_features: int | None = Field(1000, ge=1, description="vocabulary size (most frequent"
                                                             " terms); null keeps all")
    min_df: int = Field(2, ge=1, description="ignore terms in fewer training documents")
    max_df: float = Field(0.95, gt=0.0, le=1.0, description="ignore terms in a larger share of"
                                                            " training documents")
    stop_words: Literal["english"] | None = Field(
        "english", description="scikit-learn's built-in English stop-word list, or null")
    sublinear_tf: bool = Field(True, description="use 1 + log(tf) instead of raw counts")
    analyzer: Literal["word", "char", "char_wb"] = Field(
        "word", description="word: word n-grams (needs spaces between words); char: "
        "character n-grams, for scripts written without spaces (Chinese, Japanese, Thai); "
        "char_wb: character n-grams inside word boundaries")
    ngram_min: int = Field(1, ge=1, le=5, description="shortest n-gram (with char analyzers,"
                                                      " e.g. 1 or 2 characters)")
    ngram_max: int = Field(1, ge=1, le=5, description="longest n-gram (words, or characters"
                                                      " with a char analyzer)")
    norm: Literal["l2", "l1"] | None = Field("l2", description="row normalisation")


class TfidfFeatures(Configured, FeatureExtractor):
    """TF-IDF text vectors (scikit-learn).

    Fits the vocabulary and IDF weights on training texts; rows are dense float64.
    """

    modality = "text"

    params_model = TfidfParams

    def fit(self, items: Sequence[str]) -> "TfidfFeatures":
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = check_texts(items, "tfidf")
        min_df = self.min_df if len(texts) >= self.min_df else 1
        if self.ngram_min > self.ngram_max:
            raise ValueError(f"tfidf: ngram_min {self.ngram_min} is larger than ngram_max"
                             f" {self.ngram_max}")
        words = self.analyzer == "word"
        self.vectorizer_ = TfidfVectorizer(
            analyzer=self.analyzer, max_features=self.max_features, min_df=min_df,
            max_df=self.max_df,
            # stop words are words: with a char analyzer scikit-learn would ignore them
            stop_words=self.stop_words if words else None, sublinear_tf=self.sublinear_tf,
            ngram_range=(self.ngram_min, self.ngram_max), norm=self.norm, dtype=np.float64)
        try:
            self.vectorizer_.fit(texts)
        except ValueError as exc:  # e.g. "empty vocabulary"
            raise ValueError(f"tfidf: cannot build a vocabulary from {len(texts)} training"
                             f" texts: {exc}") from None
        return self

    def transform(self, items: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "vectorizer_"):
            raise RuntimeError("tfidf: call fit() on the training texts first")
        return self.vectorizer_.transform(check_texts(items, "tfidf")).toarray()

    @property
    def vocabulary(self) -> list[str]:
        return list(self.vectorizer_.get_feature_names_out())
