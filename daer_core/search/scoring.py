"""Exact relation-network scores of one query against stored gallery items.

The relation head of a concat-fusion model with an element-wise enhancement splits per
modality (see :meth:`daer_core.pipeline.RetrievalModel._split_first_layer`):
``score(t, i) = g(W_t e(t) + W_i e(i) + b)``, with ``g`` the rest of the MLP. A gallery index
stores each item's half (``W_i e(i) + b`` for an image, ``W_t e(t)`` for a text), so scoring a
candidate costs one vector addition and ``g`` — the same numbers that
:meth:`~daer_core.pipeline.RetrievalModel.score_matrix` computes for the pair. Models that do
not split (product fusion, two-tower relations) are scored from the stored embeddings with
:meth:`~daer_core.pipeline.RetrievalModel.pair_scores`.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch

from ..interfaces.relation import emitting_logits

Side = Literal["text", "image"]
SIDES: tuple[Side, Side] = ("text", "image")

#: rows of hidden activations scored at once (bounds memory for very large galleries)
SCORE_BLOCK = 16384


def other(side: Side) -> Side:
    """The modality a query of ``side`` ranks."""
    return "image" if side == "text" else "text"


class PairScorer:
    """The model's relation side, cut where a gallery index needs it."""

    def __init__(self, model):
        self.model = model
        self.text_dim = int(model.text_encoder.out_dim)
        self.image_dim = int(model.image_encoder.out_dim)
        probe = model._split_first_layer(torch.zeros(1, self.text_dim),
                                         torch.zeros(1, self.image_dim))
        #: True when the relation head splits per modality (halves are stored and used)
        self.splits = probe is not None
        self.hidden_dim = int(probe[0].shape[1]) if probe is not None else 0

    def dim(self, side: Side) -> int:
        return self.text_dim if side == "text" else self.image_dim

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def features(self, emb: torch.Tensor) -> torch.Tensor:
        """What the relation head sees of one item: the enhanced embedding when the model
        splits (the first layer is linear in it), else the raw embedding."""
        if self.splits and self.model.enhancement is not None:
            return self.model.enhancement(emb)
        return emb

    @torch.no_grad()
    def halves(self, side: Side, emb: torch.Tensor) -> torch.Tensor | None:
        """``(N, H)`` first-layer halves of ``side`` embeddings; None when the model does not
        split. The bias goes with the image half, as in ``score_matrix``."""
        if not self.splits:
            return None
        dev = emb.device
        if side == "text":
            return self.model._split_first_layer(emb, torch.zeros(0, self.image_dim, device=dev))[0]
        return self.model._split_first_layer(torch.zeros(0, self.text_dim, device=dev), emb)[1]

    @torch.no_grad()
    def scores(self, query_side: Side, query_emb: torch.Tensor, query_half: torch.Tensor | None,
               item_emb: torch.Tensor | None, item_half: torch.Tensor | None, *,
               logits: bool = False, bf16: bool = False) -> torch.Tensor:
        """Exact scores ``(N,)`` of one query against N items of the other side (CPU float32).

        ``query_emb`` is ``(1, D)``; items come as halves (split models) or embeddings.
        ``logits=True`` returns the head's score before its final sigmoid — the same order
        without float32 saturation into ties, which is what ranking uses (as evaluation does).
        ``bf16`` runs the head's layers in bfloat16 (fast where native; the caller settles
        near-ties in float32, as :class:`~.searcher.GallerySearcher` does).
        """
        dev = self._device()
        with emitting_logits(self.model.relation) if logits else nullcontext(), \
                torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            return self._scores(query_side, query_emb, query_half, item_emb, item_half)

    def _scores(self, query_side, query_emb, query_half, item_emb, item_half) -> torch.Tensor:
        dev = self._device()
        if self.splits:
            assert query_half is not None and item_half is not None
            q = query_half.to(dev).reshape(1, -1)
            out = [self.model.relation.after_first_layer(item_half[a:a + SCORE_BLOCK].to(dev) + q)
                   for a in range(0, item_half.shape[0], SCORE_BLOCK)]
        else:
            assert item_emb is not None
            q = query_emb.to(dev).reshape(1, -1)
            out = []
            for a in range(0, item_emb.shape[0], SCORE_BLOCK):
                block = item_emb[a:a + SCORE_BLOCK].to(dev)
                if query_side == "text":
                    out.append(self.model.pair_scores(q, block)[0])
                else:
                    out.append(self.model.pair_scores(block, q)[:, 0])
        if not out:
            return torch.zeros(0)
        return torch.cat(out).float().cpu()
