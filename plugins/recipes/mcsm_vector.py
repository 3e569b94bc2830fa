"""The ``mcsm-vector`` encoders (text and image) for ``features`` datasets.

A single vector per item has no regions or words, so the recurrent attention reads the
(standardised) vector as ``steps`` equal chunks; the projection into the other modality's
space reads the whole vector. One module for both roles: they share one network.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import Field
from torch import nn

from daer_core.data.feature_pairs import VectorToTensor, vectors_as_batch
from daer_core.errors import ConfigError
from daer_core.interfaces import ImageEncoder, TextEncoder
from registry import Params

from .mcsm_layers import RecurrentAttention, arrange, projection


class MCSMVectorParams(Params):
    """Params of the ``mcsm-vector`` feature encoder (text or image)."""

    dim: int = Field(256, ge=1, description="width of each semantic space (the LSTM's units "
                     "and the projection's output); the encoder outputs 2*dim")
    steps: int = Field(1, ge=1, description="the vector is read as this many equal chunks, the "
                       "recurrent attention's sequence (1: no regions/words in a single vector)")
    attention_dim: int | None = Field(None, ge=1, description="width of M = tanh(W_a H); null = "
                                      "dim")
    hidden: list[int] = Field(default_factory=lambda: [1024], description="hidden layers of "
                              "the projection into the other modality's space (ReLU after each)")
    normalize: Literal["batchnorm", "none"] = Field(
        "batchnorm", description="standardise each input dimension (running statistics)")


class MCSMVectorNet(nn.Module):
    def __init__(self, params: MCSMVectorParams, role: str):
        super().__init__()
        self.params, self.role = params, role
        d = int(params.dim)
        self.norm = nn.LazyBatchNorm1d(affine=False) if params.normalize == "batchnorm" \
            else nn.Identity()
        self.chunk = nn.LazyLinear(d)  # embeds each chunk (its width is known from the data)
        self.own = RecurrentAttention(d, d, int(params.attention_dim or d))
        self.other = projection(None, params.hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        steps = self.params.steps
        if x.shape[1] % steps:
            raise ConfigError(f"mcsm-vector: a {x.shape[1]}-d vector cannot be read as {steps} "
                              "equal chunks; set pipeline.*.encoder.params.steps to a divisor")
        seq = self.chunk(x.reshape(x.shape[0], steps, x.shape[1] // steps))
        return arrange(self.role, self.own(seq), self.other(x))


class MCSMVectorImageEncoder(ImageEncoder):
    """Image feature vectors -> ``[image-space | text-space]`` embeddings."""

    inputs = "features"
    image_size = 0

    def __init__(self, params: MCSMVectorParams):
        super().__init__()
        self.params = params
        self.out_dim = 2 * int(params.dim)
        self.net = MCSMVectorNet(params, "image")

    def transform(self, train: bool = False) -> Callable:
        return VectorToTensor()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class MCSMVectorTextEncoder(TextEncoder):
    """Text feature vectors -> ``[image-space | text-space]`` embeddings."""

    inputs = "features"

    def __init__(self, params: MCSMVectorParams):
        super().__init__()
        self.params = params
        self.out_dim = 2 * int(params.dim)
        self.net = MCSMVectorNet(params, "text")

    def prepare(self, texts: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"features": vectors_as_batch(texts)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs["features"])


def make_vector_text(params: MCSMVectorParams, tokenizer=None, attention=None
                     ) -> MCSMVectorTextEncoder:
    return MCSMVectorTextEncoder(params)


def make_vector_image(params: MCSMVectorParams, attention=None,
                      native_image_size: int | None = None) -> MCSMVectorImageEncoder:
    return MCSMVectorImageEncoder(params)
