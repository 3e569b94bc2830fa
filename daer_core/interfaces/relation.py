"""Interfaces of the relation side: fusion, enhancement, relation head and loss.

Pairs are scored as ``relation(enhancement(fusion(text_emb, image_emb)))``. The core forms
the pairs (all Q x P combinations, in blocks) — components only see flat ``(N, D)`` batches.
"""
from __future__ import annotations

from abc import abstractmethod
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .modules import Module


class Fusion(Module):
    """Combines paired embeddings: ``(N, Dt), (N, Di) -> (N, out_dim)``.

    Built with ``factory(params, text_dim=Dt, image_dim=Di)``; sets :attr:`out_dim`.
    """

    out_dim: int
    #: True when ``forward(t, i)`` is exactly ``cat([t, i], dim=1)``; lets the core score a
    #: gallery without forming the fused pairs (see :meth:`RelationHead.first_layer`)
    concatenates: bool = False

    @abstractmethod
    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor: ...


class Enhancement(Module):
    """Reshapes the fused distribution element-wise: ``(N, D) -> (N, D)``.

    Built with ``factory(params, dim=D)``; must keep the width and have finite gradients.
    """

    out_dim: int
    #: True when each output element depends only on the same input element, with parameters
    #: shared by all elements (so enhancing a concatenation = concatenating the enhanced parts);
    #: such an enhancement must then accept inputs of any width
    elementwise: bool = False

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


class RelationHead(Module):
    """Scores fused pairs: ``(N, in_dim) -> (N,)``.

    Built with ``factory(params, fused_dim=D)``. A head whose params fix ``in_dim`` keeps it,
    and pipeline assembly reports a mismatch with the fusion's output before any data flows.
    """

    in_dim: int
    #: When True, a head whose score ends in a squashing map (a sigmoid) returns the score
    #: before it. Evaluation ranks with it set (:func:`emitting_logits`): in float32 the
    #: sigmoid of every logit above ~17 is exactly 1.0, which turns distinct scores into ties.
    #: The order is otherwise the same (the map is increasing); training never sets it.
    emit_logits: bool = False

    @abstractmethod
    def forward(self, fused: torch.Tensor) -> torch.Tensor: ...

    def first_layer(self) -> nn.Linear | None:
        """The head's first layer when it is a linear map of the fused input, else None.

        With it (and :meth:`after_first_layer`), the core scores Q x P pairs of a concat
        fusion by projecting each text and each image once and adding the two parts per pair,
        instead of running the first layer on every fused pair.
        """
        return None

    def after_first_layer(self, hidden: torch.Tensor) -> torch.Tensor:
        """The rest of the head, from the first layer's output ``(N, H)`` to scores ``(N,)``."""
        raise NotImplementedError


@contextmanager
def emitting_logits(head: RelationHead) -> Iterator[RelationHead]:
    """Within the block, ``head`` returns pre-squashing scores (see ``emit_logits``)."""
    before = head.emit_logits
    head.emit_logits = True
    try:
        yield head
    finally:
        head.emit_logits = before


class TwoTowerRelation(RelationHead):
    """A relation that scores embeddings directly (no fusion): ``(Q, D), (P, D) -> (Q, P)``.

    Built with ``factory(params, fused_dim=..., text_dim=Dt, image_dim=Di)``.
    """

    @abstractmethod
    def score(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor: ...

    def class_head(self) -> nn.Linear | None:
        """The linear classifier over the common space that this relation ranks through, if
        it has one. A recipe that trains a classifier on the common space (FGCrossNet) trains
        this one instead of a classifier of its own, so that ranking reads the very classifier
        the recipe trained. Default: none."""
        return None


class RelationLoss(Module):
    """Compares predicted scores ``(Q, P)`` with the 0/1 target ``(Q, P)``; returns a scalar."""

    @abstractmethod
    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
