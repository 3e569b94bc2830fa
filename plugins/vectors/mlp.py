"""``vector-mlp``: a precomputed feature vector -> (normalisation) -> MLP -> ``out_dim``.

Registered as both a ``text_encoder`` and an ``image_encoder``. The input width is taken
from the data at the first forward pass (lazy layers; the trainer runs one before training),
so one preset serves 10-d LDA and 4096-d VGG features alike. ``normalize: batchnorm``
standardises every input dimension with running statistics (published features come in very
different scales: LDA proportions vs SIFT counts).
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import Field
from torch import nn

from daer_core.data.feature_pairs import VectorToTensor, vectors_as_batch
from daer_core.interfaces import ImageEncoder, TextEncoder
from registry import Params


class VectorMLPParams(Params):
    """Params of the ``vector-mlp`` feature encoder."""

    hidden: list[int] = Field(default_factory=lambda: [1024],
                              description="hidden layer widths (ReLU after each); [] = linear")
    out_dim: int = Field(300, ge=1, description="embedding width (DAER's 300)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer")
    normalize: Literal["batchnorm", "none"] = Field(
        "batchnorm", description="standardise each input dimension (running statistics)")


def build_mlp(params: VectorMLPParams) -> nn.Sequential:
    layers: list[nn.Module] = []
    if params.normalize == "batchnorm":
        layers.append(nn.LazyBatchNorm1d(affine=False))
    width: int | None = None
    for h in params.hidden:
        layers += [nn.LazyLinear(h) if width is None else nn.Linear(width, h), nn.ReLU()]
        if params.dropout:
            layers.append(nn.Dropout(params.dropout))
        width = h
    layers.append(nn.LazyLinear(params.out_dim) if width is None else
                  nn.Linear(width, params.out_dim))
    return nn.Sequential(*layers)


class VectorTextEncoder(TextEncoder):
    """Text feature vectors -> embeddings."""

    inputs = "features"

    def __init__(self, params: VectorMLPParams):
        super().__init__()
        self.params = params
        self.out_dim = params.out_dim
        self.net = build_mlp(params)

    def prepare(self, texts: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"features": vectors_as_batch(texts)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs["features"])

    def layer_stack(self) -> nn.Sequential:
        return self.net


class VectorImageEncoder(ImageEncoder):
    """Image feature vectors -> embeddings."""

    inputs = "features"
    image_size = 0  # no pixels

    def __init__(self, params: VectorMLPParams):
        super().__init__()
        self.params = params
        self.out_dim = params.out_dim
        self.net = build_mlp(params)

    def transform(self, train: bool = False) -> VectorToTensor:
        return VectorToTensor()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def layer_stack(self) -> nn.Sequential:
        return self.net


def make_text(params: VectorMLPParams, tokenizer=None, attention=None) -> VectorTextEncoder:
    return VectorTextEncoder(params)


def make_image(params: VectorMLPParams, attention=None,
               native_image_size: int | None = None) -> VectorImageEncoder:
    return VectorImageEncoder(params)
