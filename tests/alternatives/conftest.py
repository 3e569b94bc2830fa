"""Shared fixtures: a tiny random BERT saved like a real model directory (no download)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "large", "small", "red",
         "blue", "green", "circle", "square", "star", "left", "right", "of", "above", "below",
         "##s", "cat", "on", "mat"]


def save_tiny_bert(path: Path, hidden: int = 16) -> Path:
    """A 1-layer BERT with a 24-word WordPiece vocabulary, written with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizer
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=32)
    BertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")

