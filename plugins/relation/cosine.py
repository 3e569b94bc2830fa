"""The ``cosine`` relation: a two-tower scorer without a relation network.

Texts and images are compared directly by the cosine of their embeddings, so all ``Q x P``
scores are one matrix product — no pair is ever fused. The cosine (in ``[-1, 1]``) is mapped
to a ``[0, 1]``-like score so that it can be compared with the 0/1 target matrix of the
Frobenius loss:

* ``affine``: ``(cos + 1) / 2`` — fixed, no parameters;
* ``sigmoid``: ``sigmoid(scale * cos + bias)`` — ``scale`` (a temperature's inverse) and
  ``bias`` are learned when ``learnable`` is true, so the model can make dissimilar pairs
  score near 0 although their cosine rarely reaches -1.

Both embeddings must have the same width (set both encoders' ``out_dim``).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.interfaces import TwoTowerRelation
from registry import Params

from .two_tower import common_width


class CosineParams(Params):
    """Params of the ``cosine`` relation."""

    mapping: Literal["affine", "sigmoid"] = Field(
        "sigmoid", description="affine: (cos + 1) / 2; sigmoid: sigmoid(scale * cos + bias)")
    scale: float = Field(10.0, gt=0, description="initial scale of the sigmoid mapping")
    bias: float = Field(-5.0, description="initial bias of the sigmoid mapping")
    learnable: bool = Field(True, description="learn scale and bias (sigmoid mapping only)")


class CosineRelation(TwoTowerRelation):
    """Scores ``(Q, D)`` texts against ``(P, D)`` images by cosine similarity."""

    def __init__(self, params: CosineParams, text_dim: int, image_dim: int):
        super().__init__()
        self.params = params
        self.in_dim = common_width("cosine", text_dim, image_dim)
        scale = torch.tensor(float(params.scale)).log()
        bias = torch.tensor(float(params.bias))
        if params.mapping == "sigmoid" and params.learnable:
            self.log_scale = nn.Parameter(scale)  # log keeps the scale positive
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("log_scale", scale)
            self.register_buffer("bias", bias)

    def _map(self, cos: torch.Tensor) -> torch.Tensor:
        if self.params.mapping == "affine":
            return (cos + 1.0) / 2.0
        logit = self.log_scale.exp() * cos + self.bias
        return logit if self.emit_logits else torch.sigmoid(logit)

    def score(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """All pairs: ``(Q, D), (P, D) -> (Q, P)``."""
        if text.shape[-1] != self.in_dim or image.shape[-1] != self.in_dim:
            raise ValueError(f"cosine relation expects width {self.in_dim}, got text "
                             f"{tuple(text.shape)} and image {tuple(image.shape)}")
        cos = F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
        return self._map(cos)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Paired rows only: ``(N, D), (N, D) -> (N,)`` (row i of text with row i of image)."""
        return self._map(F.cosine_similarity(text, image, dim=-1))


def make_cosine(params: CosineParams, fused_dim: int | None = None, text_dim: int = 0,
                image_dim: int = 0) -> CosineRelation:
    """two-tower: cosine of text and image embeddings mapped to [0, 1], no relation network

    Registry factory; ``fused_dim`` is unused (no fusion in a two-tower model).
    """
    return CosineRelation(params, text_dim=text_dim, image_dim=image_dim)
