"""Two-stage search over a gallery index: ANN candidates, then exact relation scores.

Stage one asks the side's FAISS index for the ``candidates`` items with the highest
first-stage inner product; stage two scores exactly those with the relation network and keeps
the best ``k``. With ``candidates`` equal to the side's size (or ``exhaustive=True``) every
item is scored — the paper's protocol, and what the benchmark measures recall against.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from . import ann
from .index import GalleryIndex
from .scoring import Side, other

#: default candidate count: ``max(MIN_CANDIDATES, CANDIDATE_FRACTION * side size)``, at
#: least ``k``; docs/search.md has the recall this gives
MIN_CANDIDATES = 100
CANDIDATE_FRACTION = 0.01


def default_candidates(size: int, k: int) -> int:
    return min(size, max(k, MIN_CANDIDATES, math.ceil(CANDIDATE_FRACTION * size)))


def exact_head(k: int, candidates: int) -> int:
    """Candidates re-scored in float32 after bfloat16 scoring: ``4k + 16`` (a margin of
    ranks for the bfloat16 rounding of near-tied scores)."""
    return min(candidates, 4 * k + 16)


@dataclass
class Hit:
    rank: int
    row: int
    score: float          # the relation head's output (a sigmoid for the paper's head)
    logit: float          # the score ranked on: the head's output before its final sigmoid
    item: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "row": self.row, "id": self.item["id"], "score": self.score,
                "logit": self.logit,
                "labels": list(self.item.get("labels") or []), "text": self.item.get("text"),
                "image": self.item.get("path")}


@dataclass
class SearchResult:
    side: Side                     # the side that was ranked
    hits: list[Hit]
    candidates: int                # items scored exactly
    exhaustive: bool
    seconds: dict[str, float] = field(default_factory=dict)


class GallerySearcher:
    """A model and its gallery index, ready for queries."""

    def __init__(self, model, preprocess, index: GalleryIndex,
                 device: torch.device | str = "cpu", rerank_k: int | None = None,
                 bf16: bool | str = False):
        self.model = model
        self.preprocess = preprocess
        self.index = index
        self.device = torch.device(device)
        self.scorer = index.scorer
        #: the default candidate count of a run that re-ranks its own first stage (its
        #: ``evaluate.rerank_k``): the relation head re-scores exactly the candidates it was
        #: evaluated on; None = :func:`default_candidates`
        self.rerank_k = rerank_k
        #: score candidates with bfloat16 products (``evaluate.bf16``: auto = where native);
        #: the best :func:`exact_head` of them are re-scored in float32, which orders the hits
        from ..evaluation.retrieval import resolve_scoring_bf16
        self.bf16 = resolve_scoring_bf16(bf16, self.device)

    @torch.no_grad()
    def embed_text(self, text: str) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in self.preprocess.text([text]).items()}
        return self.model.encode_text(inputs).float()

    @torch.no_grad()
    def embed_image(self, image) -> torch.Tensor:
        """``image`` is a PIL image (RGB)."""
        batch = self.preprocess.image_eval(image).unsqueeze(0).to(self.device)
        return self.model.encode_image(batch).float()

    def search_text(self, text: str, k: int = 10, candidates: int | None = None,
                    exhaustive: bool = False) -> SearchResult:
        """Images for a text query."""
        t0 = time.perf_counter()
        emb = self.embed_text(text)
        res = self.search("text", emb, k, candidates, exhaustive)
        res.seconds["embed"] = time.perf_counter() - t0 - sum(res.seconds.values())
        return res

    def search_image(self, image, k: int = 10, candidates: int | None = None,
                     exhaustive: bool = False) -> SearchResult:
        """Texts for an image query."""
        t0 = time.perf_counter()
        emb = self.embed_image(image)
        res = self.search("image", emb, k, candidates, exhaustive)
        res.seconds["embed"] = time.perf_counter() - t0 - sum(res.seconds.values())
        return res

    @torch.no_grad()
    def search(self, query_side: Side, query_emb: torch.Tensor, k: int = 10,
               candidates: int | None = None, exhaustive: bool = False) -> SearchResult:
        """Rank the other side for one embedded query."""
        if k < 1:
            raise ConfigError("k must be at least 1")
        side = other(query_side)
        data = self.index.sides[side]
        n = len(data)
        removed = self.index.removed_rows(side)
        alive = n - len(removed)
        if alive == 0:
            raise ConfigError(f"the index has no {side}s to rank for a {query_side} query"
                              f" (sources: {[j['source'].get('kind') for j in self.index.info['jobs']]})")
        if candidates is not None and candidates < 1:
            raise ConfigError("candidates must be at least 1")
        default = (max(k, self.rerank_k) if self.rerank_k is not None
                   else default_candidates(n, k))
        cand = alive if exhaustive else min(alive, candidates or default)
        cand = max(cand, min(k, alive))
        seconds: dict[str, float] = {}
        q_half = self.scorer.halves(query_side, query_emb) if self.scorer.splits else None
        t0 = time.perf_counter()
        if cand >= alive:
            rows = np.setdiff1d(np.arange(n), removed) if len(removed) else np.arange(n)
            exhaustive = True
        else:
            qv = self.index.first_stage.query_vector(query_side, query_emb)
            # removed rows are still in the FAISS index: ask for as many more, drop them
            got = ann.search(self.index.ann[side], self.index.settings[side], qv,
                             min(n, cand + len(removed)))
            if len(removed):
                got = got[~np.isin(got, removed)]
            # row order (not first-stage order) so that ties break as in exhaustive scoring
            rows = np.sort(got[:cand])
        t1 = time.perf_counter()
        whole = exhaustive and not len(removed)
        sel = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        emb = data.embedding if whole else data.embedding[sel]
        half = None if data.half is None else (data.half if whole else data.half[sel])
        logits = self.scorer.scores(query_side, query_emb, q_half, emb, half, logits=True,
                                    bf16=self.bf16)
        if self.bf16:
            logits = self._settle_near_ties(query_side, query_emb, q_half, emb, half, logits, k)
        order = np.argsort(-logits.double().numpy(), kind="stable")[:k]
        t2 = time.perf_counter()
        seconds.update({"first_stage": t1 - t0, "rerank": t2 - t1})
        # shown: the head's own output (e.g. a sigmoid in [0, 1]) for the k hits only
        top = torch.from_numpy(order.copy())
        shown = self.scorer.scores(query_side, query_emb, q_half, emb[top],
                                   None if half is None else half[top])
        hits = [Hit(rank=r + 1, row=int(rows[j]), score=float(shown[r]),
                    logit=float(logits[j]), item=data.meta[int(rows[j])])
                for r, j in enumerate(order)]
        return SearchResult(side, hits, len(rows), exhaustive, seconds)

    def _settle_near_ties(self, query_side, query_emb, q_half, emb, half, logits, k):
        """bfloat16 scores order the candidates to within a few units of its last place;
        the best :func:`exact_head` of them are re-scored in float32, and every other
        candidate is placed below them, so the hits and their order are float32's unless a
        true top-k item fell that far in the bfloat16 order."""
        head = np.argsort(-logits.double().numpy(), kind="stable")[:exact_head(k, len(logits))]
        sel = torch.from_numpy(np.sort(head))
        exact = self.scorer.scores(query_side, query_emb, q_half, emb[sel],
                                   None if half is None else half[sel], logits=True)
        out = torch.full_like(logits, -torch.inf)
        out[sel] = exact
        return out
