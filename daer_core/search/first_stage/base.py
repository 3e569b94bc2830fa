"""What every first stage is: the interface the index uses, how it is saved, and the relation
head's scores that the fitted stages imitate."""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ...interfaces.relation import emitting_logits
from ..scoring import PairScorer, Side


def teacher_logits(model, text: torch.Tensor, image: torch.Tensor, *,
                   block_size: int = 256) -> torch.Tensor:
    """The relation head's pre-sigmoid scores of every ``text x image`` pair: what the fitted
    first stages imitate (computed once by ``daer index`` and shared by the fit and the
    gallery refinement). The logit keeps differences among the best items that the sigmoid
    flattens near 1."""
    with torch.no_grad(), emitting_logits(model.relation):
        return model.score_matrix(text, image, block_size=block_size).float().cpu()


class FirstStage:
    """Maps items and queries into the space the ANN index searches.

    A subclass names itself (``name``, the method in ``index.json`` and ``--first-stage``),
    says whether it is ``fitted`` on the training split's embeddings or derived from the
    weights alone, how it is built for an index (:meth:`create`) and how it is rebuilt from
    the arrays it saved (:meth:`from_arrays`). The table of methods is
    :data:`daer_core.search.first_stage.methods.STAGES`.
    """

    name: ClassVar[str]
    #: True when the stage learns from the training split's embeddings (they must be given)
    fitted: ClassVar[bool] = False

    def __init__(self, scorer: PairScorer):
        self.scorer = scorer

    @classmethod
    def create(cls, scorer: PairScorer, text_emb: torch.Tensor | None,
               image_emb: torch.Tensor | None, **options) -> "FirstStage":
        """The stage for a new index. The default derives it from the weights alone (the
        embeddings and ``options`` are not used); fitted stages fit on the embeddings."""
        return cls(scorer)

    @classmethod
    def from_arrays(cls, scorer: PairScorer, arrays: dict[str, np.ndarray],
                    meta: dict) -> "FirstStage":
        """Rebuild the stage from what :meth:`save` wrote: its arrays and ``meta`` (the JSON
        saved beside them). A missing array raises ``KeyError`` with its name."""
        return cls(scorer)

    def item_dim(self, side: Side) -> int:
        """Width of the vectors of items of ``side`` (and of the queries that search them)."""
        raise NotImplementedError

    def item_vectors(self, side: Side, emb: torch.Tensor) -> np.ndarray:
        """``(N, dim)`` float32 vectors of items of ``side`` from their raw embeddings."""
        raise NotImplementedError

    def query_vector(self, query_side: Side, emb: torch.Tensor) -> np.ndarray:
        """``(1, dim)`` float32 vector of one query of ``query_side``."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """What must be saved to rebuild this stage (besides the model)."""
        return {}

    def meta(self) -> dict:
        """JSON-ready settings saved beside the arrays (informative)."""
        return {}

    def save(self, path: Path) -> None:
        meta = {"method": self.name, **self.meta()}
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.arrays())
