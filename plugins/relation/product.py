"""The ``product`` fusion: both embeddings projected to one width, multiplied element-wise.

An alternative to the paper's concatenation. A product lets the relation network see where
the two modalities agree (large when both projections are large with the same sign) without
learning that interaction itself; the projections make texts and images of different widths
comparable.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from daer_core.interfaces import Fusion
from registry import Params


class ProductParams(Params):
    """Params of the ``product`` fusion."""

    width: int = Field(300, ge=1, description="common width both embeddings are projected to;"
                       " the fused output has this width")
    bias: bool = Field(True, description="whether the two projections have a bias")


class ProductFusion(Fusion):
    """``(N, Dt), (N, Di) -> (N, width)``: ``(W_t t) * (W_i i)``."""

    def __init__(self, params: ProductParams, text_dim: int, image_dim: int):
        super().__init__()
        self.text_proj = nn.Linear(int(text_dim), params.width, bias=params.bias)
        self.image_proj = nn.Linear(int(image_dim), params.width, bias=params.bias)
        self.out_dim = params.width

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"product fusion pairs rows: got {text.shape[0]} texts and "
                             f"{image.shape[0]} images")
        return self.text_proj(text) * self.image_proj(image)


def make_product(params: ProductParams, text_dim: int, image_dim: int) -> ProductFusion:
    """element-wise product of both embeddings projected to a common width"""
    return ProductFusion(params, text_dim=text_dim, image_dim=image_dim)
