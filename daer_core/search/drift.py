"""How well an index's first stage still finds the best items after items were added to it.

The first stage was fitted (and refined) on the gallery the index had then; items added later
may lie where it ranks badly, and a first stage that misses the relation head's best items
caps recall however exactly the candidates are re-scored. After an added job, up to
``queries`` items of the job (from the side opposite the ranked one) are used as queries
against a sample of at most ``universe`` rows of the ranked side (the job's own rows
included): the relation head ranks the sample exhaustively, the first stage's vectors pick
the default number of candidates for a side of that size, and the share of the exhaustive
top ``k`` among those candidates is the measured recall. Below ``WARN_BELOW`` ``daer index
add`` warns and names the fix (refit the first stage on the whole gallery).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .scoring import other

#: recall@k of the first stage's candidates under which adding items warns
WARN_BELOW = 0.9


def job_rows(index, job: int, side: str) -> np.ndarray:
    """Rows of ``side`` that ``job`` added."""
    return np.asarray([row for row, m in enumerate(index.sides[side].meta) if m["job"] == job],
                      dtype=np.int64)


@torch.no_grad()
def first_stage_recall(index, job: int, *, k: int = 10, queries: int = 32,
                       universe: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """Per ranked side: recall@k of the first stage's default candidates against exhaustive
    relation scoring, for queries drawn from ``job`` (see the module docstring)."""
    from .searcher import default_candidates
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for ranked in ("image", "text"):
        query_side = other(ranked)
        data, qdata = index.sides[ranked], index.sides[query_side]
        if not len(data) or not len(qdata):
            continue
        own = job_rows(index, job, query_side)
        if not len(own):
            continue
        q_rows = np.sort(rng.choice(own, min(queries, len(own)), replace=False))
        added = job_rows(index, job, ranked)
        rest = np.setdiff1d(np.arange(len(data)), added)
        room = max(0, universe - len(added))
        pool = np.sort(np.concatenate([added[:universe],
                                       rng.choice(rest, min(room, len(rest)), replace=False)
                                       if len(rest) else rest]).astype(np.int64))
        sel = torch.from_numpy(pool)
        emb = data.embedding[sel]
        half = None if data.half is None else data.half[sel]
        items = index.first_stage.item_vectors(ranked, emb)
        cand = default_candidates(len(pool), k)
        hits = []
        for r in q_rows:
            q = qdata.embedding[int(r)].reshape(1, -1).float()
            q_half = index.scorer.halves(query_side, q) if index.scorer.splits else None
            exact = index.scorer.scores(query_side, q, q_half, emb, half, logits=True).numpy()
            truth = set(np.argsort(-exact, kind="stable")[:k].tolist())
            first = items @ index.first_stage.query_vector(query_side, q).reshape(-1)
            found = set(np.argsort(-first, kind="stable")[:cand].tolist())
            hits.append(len(truth & found) / max(1, len(truth)))
        out[ranked] = {"recall_at_k": float(np.mean(hits)), "k": k, "queries": len(q_rows),
                       "universe": int(len(pool)), "candidates": int(cand)}
    return out
