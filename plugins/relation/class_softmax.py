"""The ``class-softmax`` relation: rank by the cosine of the class distributions.

FGCrossNet's public code does not rank on its common representation: it passes every item
through the classifier it trained (``d -> C``), takes the softmax, and ranks by the cosine of
these ``C``-way distributions. This relation does the same for any two-tower pipeline: it holds
a linear classifier ``W`` shared by both media and scores a pair by
``cos(softmax(W t + b), softmax(W v + b))``. Both distributions are non-negative, so the score
is already in ``[0, 1]``.

The classifier's size must be the training data's number of classes
(``pipeline.relation.params.num_classes``); a recipe that trains a classifier on the common
space (``fgcrossnet``) trains this one (:meth:`class_head`) and checks the size against the
data. Recipes that train no classifier leave it at its random start, which ranks by a random
projection: use it with ``fgcrossnet`` only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import TwoTowerRelation
from registry import Params

from .two_tower import common_width


class ClassSoftmaxParams(Params):
    """Params of the ``class-softmax`` relation."""

    num_classes: int | None = Field(
        None, ge=2, description="classes of the training data: the classifier's output width "
        "(required)")


class ClassSoftmaxRelation(TwoTowerRelation):
    """Scores ``(Q, D)`` texts against ``(P, D)`` images by the cosine of their class
    distributions under one shared classifier."""

    def __init__(self, num_classes: int, text_dim: int, image_dim: int):
        super().__init__()
        self.in_dim = common_width("class-softmax", text_dim, image_dim,
                                   "classifies both media with one classifier")
        self.classifier = nn.Linear(self.in_dim, int(num_classes))

    def class_head(self) -> nn.Linear:
        return self.classifier

    def _distribution(self, x: torch.Tensor, side: str) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"class-softmax relation expects width {self.in_dim}, got {side} "
                             f"{tuple(x.shape)}")
        logits = self.classifier(x.to(self.classifier.weight.dtype))
        return F.normalize(torch.softmax(logits.float(), dim=-1), dim=-1)

    def score(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """All pairs: ``(Q, D), (P, D) -> (Q, P)``."""
        return self._distribution(text, "text") @ self._distribution(image, "image").T

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Paired rows only: ``(N, D), (N, D) -> (N,)``."""
        return (self._distribution(text, "text") * self._distribution(image, "image")).sum(-1)


def make_class_softmax(params: ClassSoftmaxParams, fused_dim: int | None = None,
                       text_dim: int = 0, image_dim: int = 0) -> nn.Module:
    """two-tower: cosine of the softmax class distributions under one shared classifier
    (FGCrossNet's public-code ranking)

    Registry factory; ``fused_dim`` is unused (no fusion in a two-tower model).
    """
    if params.num_classes is None:
        raise ConfigError(
            "relation 'class-softmax' needs pipeline.relation.params.num_classes: the number "
            "of classes of the training data (its classifier's output width)")
    return ClassSoftmaxRelation(params.num_classes, text_dim=text_dim, image_dim=image_dim)
