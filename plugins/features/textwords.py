"""A plain word tokenizer for the text feature extractors (no downloads, no language model).

Lower-cased runs of letters (with inner apostrophes and hyphens), at least ``min_len`` long,
minus gensim's bundled English stop-word list. LDA and doc2vec share it so their vocabularies
agree with each other.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

_WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """gensim's bundled list (imported lazily: gensim takes seconds to import)."""
    from gensim.parsing.preprocessing import STOPWORDS
    return frozenset(STOPWORDS)


def words(text: str, min_len: int = 2, stopwords: Iterable[str] | None = None) -> list[str]:
    """Tokens of one text, in order; ``stopwords`` defaults to gensim's English list."""
    stop = english_stopwords() if stopwords is None else stopwords
    return [w for w in _WORD.findall(text.lower()) if len(w) >= min_len and w not in stop]


def check_texts(items, extractor: str) -> list[str]:
    """The items as a list of strings, or a ``TypeError`` naming the first non-string."""
    out = list(items)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise TypeError(f"{extractor}: item {i} is a {type(item).__name__}, not a text;"
                            " text feature extractors take strings")
    return out
