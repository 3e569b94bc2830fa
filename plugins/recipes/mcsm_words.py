"""The ``mcsm-words`` encoder: MCSM's text-side networks on raw texts.

The word vectors and word-level LSTM of the ``words`` reference, with the MCSM attention on
its states (text space), and a word CNN projecting the text into the image space. Kept apart
from the image side, which shares only :mod:`.mcsm_layers`.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import TextEncoder
from registry import Params, Ref, ref_field

from .mcsm_layers import AttentionPool, _into_reference, arrange

#: params of mcsm-words before its word network became a reference (``words.params``)
_WORDS_KEYS = ("vector_size", "vectors_path", "vectors_format", "min_count", "w2v_epochs",
               "seed", "max_tokens", "freeze_embeddings")


MCSM_WORDS = {"name": "word2vec-lstm", "params": {"hidden_size": 256, "out_dim": 256}}


class MCSMWordsParams(Params):
    """Params of the ``mcsm-words`` encoder (raw texts)."""

    words: Ref["text_encoder", "tokenizer"] = ref_field(
        MCSM_WORDS["name"], MCSM_WORDS["params"], description="the word network: its word "
        "vectors feed the word CNN, its token states (LSTM units = the width of each semantic "
        "space; the encoder outputs twice that) the attention (a text encoder with token "
        "vectors and states: word2vec-lstm; its output layer is not used)")
    attention_dim: int | None = Field(None, ge=1, description="width of M = tanh(W_a H); null = "
                                      "the token states' width")
    cnn_channels: int = Field(256, ge=1, description="filters of the word CNN that projects "
                              "the text into the image space")
    cnn_width: int = Field(3, ge=1, description="words per filter of the word CNN")

    @model_validator(mode="before")
    @classmethod
    def _words_params(cls, data: Any) -> Any:
        return _into_reference(data, "words", _WORDS_KEYS, MCSM_WORDS,
                               renamed={"dim": ("hidden_size", "out_dim")})


class MCSMWordsEncoder(TextEncoder):
    """Word vectors -> LSTM + attention (text space) and word CNN (image space)."""

    def __init__(self, params: MCSMWordsParams, words: TextEncoder):
        super().__init__()
        self.params = params
        vector_dim, d = words.token_dims()
        words.drop_projection()  # its pooled output layer is not used
        self.words = words
        self.out_dim = 2 * d
        self.attention = AttentionPool(d, int(params.attention_dim or d))
        self.conv = nn.Conv1d(vector_dim, params.cnn_channels, params.cnn_width,
                              padding=params.cnn_width // 2)
        self.to_image_space = nn.Linear(params.cnn_channels, d)

    @property
    def counts(self) -> Counter:
        """Token counts of :meth:`prepare` (texts, tokens, out-of-vocabulary, truncated), as
        the word network keeps them."""
        return getattr(self.words, "counts", Counter())

    def fit(self, texts: Sequence[str]) -> None:
        self.words.fit(texts)

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.words.prepare(texts)

    def export_state(self) -> dict[str, Any]:
        return self.words.export_state()

    def import_state(self, state: dict[str, Any]) -> None:
        self.words.import_state(state)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states, mask = self.words.token_states(inputs)              # (B, L, d), (B, L)
        own = self.attention(states, mask)
        vectors = self.words.token_vectors(inputs)                  # (B, L, E)
        feat = torch.relu(self.conv(vectors.transpose(1, 2)))[..., :mask.shape[1]]
        feat = feat.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(dim=2)
        return arrange("text", own, self.to_image_space(feat))


def make_mcsm_words(params: MCSMWordsParams, tokenizer, attention=None, *,
                    words: TextEncoder) -> MCSMWordsEncoder:
    """MCSM text networks: Word2Vec vectors -> word LSTM + attention (text space); word CNN,
    max over time, linear (image space)
    """
    if attention is not None:
        raise ConfigError("mcsm-words has its own (recurrent) attention; set "
                          "pipeline.text.attention: null")
    return MCSMWordsEncoder(params, words)
