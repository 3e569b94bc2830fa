"""The ``bag-of-words`` text encoder: word counts -> two-layer MLP -> ``out_dim``.

It implements :class:`daer_core.interfaces.TextEncoder` completely:

* :meth:`fit` learns the vocabulary from the training texts (vocabulary mode);
* :meth:`prepare` turns raw texts into a ``(B, vocab_size)`` float tensor on the CPU;
* :meth:`forward` maps that tensor to ``(B, out_dim)`` embeddings (trainable end to end);
* :meth:`export_state` / :meth:`import_state` carry the vocabulary in checkpoints, because
  it is not a tensor. The input width is fixed by ``vocab_size``, so the module's shapes never
  depend on the corpus and saved weights always load into a freshly built encoder.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from daer_core.errors import CheckpointError, DataError
from daer_core.interfaces import TextEncoder

from .params import BagOfWordsParams
from .tokens import simple_words, stable_bucket

STATE_FORMAT = 1
UNKNOWN = 0  # vocabulary mode: input column shared by all words outside the vocabulary


class BagOfWordsEncoder(TextEncoder):
    """Bag of words -> Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, params: BagOfWordsParams,
                 tokenizer: Callable[[str], list[str]] | None = None):
        super().__init__()
        self.params = params
        self.tokenizer = tokenizer or simple_words
        self.out_dim = params.out_dim
        #: word -> input column (1 .. vocab_size-1); column 0 is every unknown word
        self.vocabulary: dict[str, int] = {}
        self.mlp = nn.Sequential(
            nn.Linear(params.vocab_size, params.hidden_size), nn.ReLU(),
            nn.Dropout(params.dropout), nn.Linear(params.hidden_size, params.out_dim))

    # -- corpus ------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str]) -> None:
        """Vocabulary mode: keep the ``vocab_size - 1`` words found in the most texts."""
        if self.params.mode == "hashing":
            return
        doc_freq: Counter[str] = Counter()
        for text in texts:
            doc_freq.update(set(self.tokenizer(text)))
        kept = sorted((w for w, n in doc_freq.items() if n >= self.params.min_count),
                      key=lambda w: (-doc_freq[w], w))[: self.params.vocab_size - 1]
        if not kept:
            raise DataError(
                f"bag-of-words: no word occurs in at least min_count={self.params.min_count} of"
                f" the {len(texts)} training texts; lower"
                " pipeline.text.encoder.params.min_count or check the texts")
        self.vocabulary = {w: i + 1 for i, w in enumerate(kept)}

    def column(self, token: str) -> int:
        """Input column of one token."""
        if self.params.mode == "hashing":
            return stable_bucket(token, self.params.vocab_size)
        return self.vocabulary.get(token, UNKNOWN)

    # -- tensors -----------------------------------------------------------------------------
    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.params.mode == "vocabulary" and not self.vocabulary:
            raise RuntimeError("bag-of-words: the vocabulary is empty; call fit(train_texts)"
                               " first (the trainer does) or use mode: hashing")
        counts = torch.zeros(len(texts), self.params.vocab_size)
        for row, text in enumerate(texts):
            for column, n in Counter(map(self.column, self.tokenizer(text))).items():
                counts[row, column] = n
        if self.params.weighting == "binary":
            counts = (counts > 0).float()
        elif self.params.weighting == "log":
            counts = torch.log1p(counts)
        if self.params.normalize:
            counts = F.normalize(counts, dim=1)  # an empty text stays all zeros
        return {"bow": counts}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp(inputs["bow"])

    # -- checkpoint state --------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        words = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {"format": STATE_FORMAT, "mode": self.params.mode,
                "vocab_size": self.params.vocab_size, "vocabulary": words}

    def import_state(self, state: dict[str, Any]) -> None:
        if not state:
            raise CheckpointError("bag-of-words: the checkpoint has no text encoder state"
                                  " (vocabulary)")
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"bag-of-words: unsupported state format {state.get('format')!r}"
                                  f" (expected {STATE_FORMAT})")
        for key in ("mode", "vocab_size"):
            if state.get(key) != getattr(self.params, key):
                raise CheckpointError(
                    f"bag-of-words: the checkpoint was trained with {key}={state.get(key)!r} but"
                    f" pipeline.text.encoder.params.{key} is {getattr(self.params, key)!r}")
        words = list(state.get("vocabulary") or [])
        if len(words) > self.params.vocab_size - 1:
            raise CheckpointError(f"bag-of-words: {len(words)} saved words do not fit in"
                                  f" vocab_size={self.params.vocab_size}")
        self.vocabulary = {w: i + 1 for i, w in enumerate(words)}

    def extra_repr(self) -> str:
        return (f"mode={self.params.mode}, vocab_size={self.params.vocab_size},"
                f" learned_words={len(self.vocabulary)}, out_dim={self.out_dim}")
