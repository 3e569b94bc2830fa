"""Retrieval metrics: mAP per the paper's Eq. 12, mAP@k, precision@k, chance level, PR curve.

Conventions (docs/training.md, "Metrics"):

* An item is relevant to a query when they share at least one label (multi-label aware).
* ``AP = (1/R) * sum_k (R_k / k) * rel_k`` over the whole ranked gallery (mAP@all), R the
  number of relevant gallery items. Queries with R = 0 have no AP; they are excluded and counted.
* mAP@k normalises by the number of relevant items retrieved in the top k (the common
  convention in cross-modal retrieval papers); precision@k is the share relevant in the top k.
* Chance is the *expected* AP of a uniformly random ranking, computed exactly per query:
  ``E[AP] = (H_N + (R-1)/(N-1) * (N - H_N)) / N`` with ``H_N`` the N-th harmonic number.
* Ties are scored by their expectation over every order of the tied items (McSherry &
  Najork, ECIR 2008), not by gallery order: a model that gives a whole class-sorted gallery
  one score used to rank it in class order and score far above chance; now a constant model
  scores exactly chance. mAP@k divides the expected precision sum by the expected number of
  relevant items in the top k; precision@k is exact. The PR curve and ``top_k`` keep a
  stable sort (a picture and a listing need one order).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def label_matrix(labels: Sequence | np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Normalise labels to a ``(N, C)`` boolean multi-hot matrix.

    Accepts ``(N,)`` integer labels, ``(N, C)`` multi-hot arrays, or a sequence of label tuples.
    """
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        return labels.astype(bool)
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        labels = [(int(x),) for x in labels]
    tuples = [tuple(int(v) for v in (lab if isinstance(lab, Iterable) else (lab,)))
              for lab in labels]
    c = num_classes if num_classes is not None else 1 + max((max(t) for t in tuples if t), default=0)
    out = np.zeros((len(tuples), c), dtype=bool)
    for i, t in enumerate(tuples):
        out[i, list(t)] = True
    return out


def relevance(query_labels, gallery_labels) -> np.ndarray:
    """``(Q, G)`` boolean: query and gallery item share at least one label."""
    q = label_matrix(query_labels)
    g = label_matrix(gallery_labels)
    c = max(q.shape[1], g.shape[1])
    q = np.pad(q, ((0, 0), (0, c - q.shape[1])))
    g = np.pad(g, ((0, 0), (0, c - g.shape[1])))
    return (q.astype(np.float32) @ g.T.astype(np.float32)) > 0


def _ranked_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(relevant, order, axis=1)


def _tie_aware_terms(scores: np.ndarray, relevant: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per query and rank k (1-based, best first): ``E[rel_k * R_k / k]`` and ``E[rel_k]``,
    expected over all orders of tied scores.

    In a tie group holding ranks ``s+1 .. s+n`` with ``r`` relevant items and ``H`` relevant
    items ranked above it, each rank is relevant with probability ``r/n`` and, given that,
    ``R_k = H + 1 + (k-s-1)(r-1)/(n-1)`` on average (the other ``r-1`` relevant items fall
    uniformly on the other ``n-1`` places). Without ties this is the plain ranked relevance.
    """
    q, g = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1).ravel()
    rel = np.take_along_axis(relevant, order, axis=1).ravel().astype(np.float64)
    new = np.ones(q * g, dtype=bool)  # a tie group starts here (and at every query's start)
    new[1:] = s[1:] != s[:-1]
    new[::g] = True
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, q * g))
    group_rel = np.add.reduceat(rel, starts)
    # relevant items ranked above each group, within its query
    cum = np.cumsum(group_rel)
    query_of_group = starts // g
    first_group = np.searchsorted(query_of_group, np.arange(q))
    before = cum - group_rel - np.append(0.0, cum)[first_group][query_of_group]
    gid = np.cumsum(new) - 1
    n, r, h = sizes[gid].astype(np.float64), group_rel[gid], before[gid]
    k = np.tile(np.arange(1, g + 1, dtype=np.float64), q)
    within = k - 1 - (starts[gid] % g)          # place inside the group, 0-based
    spread = np.where(n > 1, (r - 1.0) / np.maximum(n - 1.0, 1.0), 0.0)
    p_rel = r / n
    precision_term = p_rel * (h + 1.0 + within * spread) / k
    return precision_term.reshape(q, g), p_rel.reshape(q, g)


def average_precision(scores: np.ndarray, relevant: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per-query AP (Eq. 12), tie-aware; NaN where the query has no relevant gallery item."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevance {relevant.shape} differ in shape")
    terms, p_rel = _tie_aware_terms(scores, relevant)
    if k is not None:
        terms, p_rel = terms[:, :k], p_rel[:, :k]
    precision_sum = terms.sum(axis=1)
    denom = relevant.sum(axis=1).astype(np.float64) if k is None else p_rel.sum(axis=1)
    total_relevant = relevant.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(denom > 0, precision_sum / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(total_relevant > 0, ap, np.nan)


def mean_average_precision(scores: np.ndarray, relevant: np.ndarray, k: int | None = None) -> float:
    """mAP over queries that have at least one relevant item (mAP@all when k is None)."""
    ap = average_precision(scores, relevant, k)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Share of the top k that is relevant, averaged over all queries (tie-aware)."""
    _, p_rel = _tie_aware_terms(np.asarray(scores, dtype=np.float64),
                                np.asarray(relevant, bool))
    return float(p_rel[:, :k].sum(axis=1).mean() / k)


def chance_average_precision(relevant: np.ndarray) -> np.ndarray:
    """Exact expected AP of a uniformly random ranking, per query (NaN when R = 0)."""
    relevant = np.asarray(relevant, dtype=bool)
    n = relevant.shape[1]
    r = relevant.sum(axis=1).astype(np.float64)
    h_n = float(np.sum(1.0 / np.arange(1, n + 1)))
    if n == 1:
        exp = np.ones_like(r)
    else:
        exp = (h_n + (r - 1.0) / (n - 1.0) * (n - h_n)) / n
    return np.where(r > 0, exp, np.nan)


def chance_map(relevant: np.ndarray) -> float:
    ap = chance_average_precision(relevant)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def precision_recall_curve(scores: np.ndarray, relevant: np.ndarray,
                           points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolated precision at ``points`` evenly spaced recall levels."""
    rel = _ranked_relevance(np.asarray(scores, dtype=np.float64), np.asarray(relevant, bool))
    total = rel.sum(axis=1, keepdims=True)
    keep = total[:, 0] > 0
    rel, total = rel[keep], total[keep]
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    recall = hits / total
    levels = np.linspace(0.0, 1.0, points)
    # interpolated precision: max precision at any recall >= level
    interp = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((rel.shape[0], points))
    for i in range(rel.shape[0]):
        idx = np.searchsorted(recall[i], levels, side="left")
        idx = np.clip(idx, 0, rel.shape[1] - 1)
        out[i] = interp[i, idx]
    return levels, out.mean(axis=0)


def retrieval_report(text_image_scores: np.ndarray, text_labels, image_labels,
                     ks: Sequence[int] = (1, 5, 10, 50)) -> dict:
    """All metrics for both directions from one ``(texts, images)`` score matrix.

    Returns top-level ``i2t``, ``t2i``, ``avg`` (mAP@all) and ``chance`` plus per-direction
    details (mAP@k, precision@k, chance, number of queries without a relevant item).
    """
    s_t2i = np.asarray(text_image_scores, dtype=np.float64)
    rel_t2i = relevance(text_labels, image_labels)
    s_i2t, rel_i2t = s_t2i.T, rel_t2i.T
    out: dict = {}
    for name, s, rel in (("i2t", s_i2t, rel_i2t), ("t2i", s_t2i, rel_t2i)):
        g = s.shape[1]
        out[name] = mean_average_precision(s, rel)
        out[f"{name}_detail"] = {
            "map_at": {str(k): mean_average_precision(s, rel, k) for k in ks if k <= g},
            "precision_at": {str(k): precision_at_k(s, rel, k) for k in ks if k <= g},
            "chance": chance_map(rel),
            "queries": int(s.shape[0]),
            "queries_without_relevant": int((rel.sum(axis=1) == 0).sum()),
        }
    out["avg"] = (out["i2t"] + out["t2i"]) / 2
    out["chance"] = (out["i2t_detail"]["chance"] + out["t2i_detail"]["chance"]) / 2
    return out
