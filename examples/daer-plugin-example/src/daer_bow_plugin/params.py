"""Params of the ``bag-of-words`` text encoder.

The pydantic model is the single source of truth: it validates ``pipeline.text.encoder.params``
(unknown keys are rejected: ``registry.Params`` sets ``extra="forbid"``), fills in defaults, and
its field descriptions are what ``daer plugins show bag-of-words`` prints. The encoder reads
every value from it, so no default is written twice.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry import Params


class BagOfWordsParams(Params):
    mode: Literal["vocabulary", "hashing"] = Field(
        "vocabulary", description="'vocabulary': the most frequent training words get one "
        "input each (fit() learns them; unseen words share one input); 'hashing': every word "
        "is hashed into vocab_size buckets (nothing to learn, no unknown words)")
    vocab_size: int = Field(
        5000, ge=2, description="number of inputs: vocabulary size including the unknown-word "
        "input, or number of hash buckets")
    min_count: int = Field(
        1, ge=1, description="vocabulary mode: keep words found in at least this many texts")
    weighting: Literal["binary", "count", "log"] = Field(
        "log", description="input value of a word: present (1), its count, or log(1 + count)")
    normalize: bool = Field(True, description="scale each text's input vector to unit length")
    hidden_size: int = Field(512, ge=1, description="units of the MLP's hidden layer")
    out_dim: int = Field(300, ge=1, description="embedding width handed to the fusion")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout after the hidden layer")
