"""``frobenius`` loss — Eq. 11, ``Loss = ||T - P||_F^2``.

``P`` is the ``Q x P`` matrix of predicted similarities of every text with every image in a
batch and ``T`` the true one: 1 where text ``q`` and image ``p`` share a label, else 0 (the
trainer builds ``T`` from the labels). The squared Frobenius norm is the sum of the squared
differences (``reduction: sum``, the paper); ``mean`` divides by ``Q x P`` so the scale does not
grow with the batch.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from daer_core.interfaces.relation import RelationLoss
from registry import Params


class FrobeniusParams(Params):
    """Params of the ``frobenius`` loss."""

    reduction: Literal["sum", "mean"] = Field(
        "sum", description="sum: ||T - P||_F^2 as in Eq. 11; mean: divided by the number of "
                           "pairs (batch-size independent scale)")


class FrobeniusLoss(RelationLoss):
    """Squared Frobenius norm of ``target - scores``."""

    def __init__(self, params: FrobeniusParams):
        super().__init__()
        self.reduction = params.reduction

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if scores.shape != target.shape:
            raise ValueError(f"frobenius loss: scores {tuple(scores.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        sq = (target.to(scores.dtype) - scores).pow(2)
        return sq.sum() if self.reduction == "sum" else sq.mean()

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def make_frobenius(params: FrobeniusParams) -> FrobeniusLoss:
    """DAER loss (Eq. 11): ||T - P||_F^2 between the 0/1 label-agreement matrix and the predicted
    similarities.
    """
    return FrobeniusLoss(params)
