"""The ``euclidean`` relation: a two-tower scorer that ranks by Euclidean distance.

Some baselines rank by the distance between common-space embeddings rather than by their
cosine (the public ACMR code, say). The score is ``1 / (1 + ||t - v||)``: in ``(0, 1]``, 1 for
identical embeddings, and decreasing in the distance, so rankings are exactly the distance's.
No parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from daer_core.interfaces import TwoTowerRelation
from registry import Params

from .two_tower import common_width


class EuclideanParams(Params):
    """Params of the ``euclidean`` relation (none)."""


class EuclideanRelation(TwoTowerRelation):
    """Scores ``(Q, D)`` texts against ``(P, D)`` images by ``1 / (1 + distance)``."""

    def __init__(self, text_dim: int, image_dim: int):
        super().__init__()
        self.in_dim = common_width("euclidean", text_dim, image_dim)

    def _check(self, text: torch.Tensor, image: torch.Tensor) -> None:
        if text.shape[-1] != self.in_dim or image.shape[-1] != self.in_dim:
            raise ValueError(f"euclidean relation expects width {self.in_dim}, got text "
                             f"{tuple(text.shape)} and image {tuple(image.shape)}")

    def score(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """All pairs: ``(Q, D), (P, D) -> (Q, P)``."""
        self._check(text, image)
        dist = torch.cdist(text.float(), image.float())
        # pre-squashing scores rank by the distance itself (no near-ties from the map)
        return -dist if self.emit_logits else 1.0 / (1.0 + dist)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Paired rows only: ``(N, D), (N, D) -> (N,)``."""
        self._check(text, image)
        dist = (text.float() - image.float()).norm(dim=-1)
        return -dist if self.emit_logits else 1.0 / (1.0 + dist)


def make_euclidean(params: EuclideanParams, fused_dim: int | None = None, text_dim: int = 0,
                   image_dim: int = 0) -> nn.Module:
    """two-tower: rank by the Euclidean distance of text and image embeddings, 1/(1+d)

    Registry factory; ``fused_dim`` is unused (no fusion in a two-tower model).
    """
    return EuclideanRelation(text_dim=text_dim, image_dim=image_dim)
