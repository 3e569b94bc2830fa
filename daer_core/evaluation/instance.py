"""Instance-level retrieval metrics: Recall@K both ways, rsum, median and mean rank.

Category-level mAP (``metrics.py``) counts any item of the query's class as relevant. The
instance-level protocol of Flickr30k / MS-COCO (VSE++, SCAN, CLIP, ALBEF, BLIP) counts only
the query's own pairs: a text query's one image; an image query's captions, where the image
query is a hit at K when **any** of its captions is in the top K.

Ties are scored by their expectation over every order of the tied items, as the mAP is: a
relevant item level with ``e`` irrelevant ones and ``m - 1`` other relevant ones, below ``g``
irrelevant ones, is first found at ``g + j`` where ``j`` is the first relevant position in a
random order of the ``e + m`` tied items. So a constant scorer gets chance, never a lucky
gallery order. ``P(j <= t) = 1 - C(e, t) / C(e + m, t)``, ``E[j] = (e + m + 1) / (m + 1)``.

COCO's two test protocols: ``5k`` ranks all 5,000 test images and 25,000 captions; ``1k``
splits them into 5 folds of 1,000 consecutive images (with their captions) and averages the
five folds' figures (:func:`folds`).
"""
from __future__ import annotations

from math import comb
from typing import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


def first_relevant(scores: np.ndarray, relevant: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query (row): ``g`` irrelevant items scored above the best relevant one, ``e``
    irrelevant items level with it, ``m`` relevant items level with it (``m >= 1``)."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevance {relevant.shape} differ")
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant item")
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    g = (~relevant & (scores > best)).sum(axis=1)
    e = (~relevant & (scores == best)).sum(axis=1)
    m = (relevant & (scores == best)).sum(axis=1)
    return g, e, m


def hit_probability(g: np.ndarray, e: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """P(first relevant rank <= k), the expectation over every order of the tied items."""
    out = np.empty(len(g), dtype=np.float64)
    for i, (gi, ei, mi) in enumerate(zip(g.tolist(), e.tolist(), m.tolist())):
        t = k - gi
        if t <= 0:
            out[i] = 0.0
        elif t > ei:
            out[i] = 1.0
        else:
            out[i] = 1.0 - comb(ei, t) / comb(ei + mi, t)
    return out


def expected_rank(g: np.ndarray, e: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[first relevant rank] (1 = top)."""
    return g + (e + m + 1.0) / (m + 1.0)


def direction_report(scores: np.ndarray, relevant: np.ndarray,
                     ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K (in [0, 1]), median and mean rank of one direction."""
    g, e, m = first_relevant(scores, relevant)
    ranks = expected_rank(g, e, m)
    out = {f"r@{k}": float(hit_probability(g, e, m, k).mean()) for k in ks}
    out["medr"] = float(np.median(ranks))
    out["meanr"] = float(ranks.mean())
    return out


def recall_report(scores_t2i: np.ndarray, text_image: Sequence[int],
                  ks: Sequence[int] = DEFAULT_KS, scores_i2t: np.ndarray | None = None) -> dict:
    """Both directions from one ``(texts, images)`` score matrix.

    ``text_image[j]`` is the image caption ``j`` belongs to. ``rsum`` is the sum of the six
    Recall@K values in percent (the papers' convention), chance levels included.
    ``scores_i2t`` (same ``(texts, images)`` layout) ranks the image queries when the two
    directions are scored differently (a re-ranked first stage re-scores each query's own
    candidates); by default both use ``scores_t2i``.
    """
    scores = np.asarray(scores_t2i, dtype=np.float64)
    other = scores if scores_i2t is None else np.asarray(scores_i2t, dtype=np.float64)
    if other.shape != scores.shape:
        raise ValueError(f"scores_i2t {other.shape} and scores_t2i {scores.shape} differ")
    owner = np.asarray(text_image, dtype=np.int64)
    n_text, n_image = scores.shape
    if owner.shape != (n_text,) or owner.min(initial=0) < 0 or owner.max(initial=0) >= n_image:
        raise ValueError(f"text_image needs one image index in [0, {n_image}) per caption"
                         f" ({n_text}), got shape {owner.shape}")
    t2i_rel = owner[:, None] == np.arange(n_image)[None, :]
    i2t = direction_report(other.T, t2i_rel.T, ks)
    t2i = direction_report(scores, t2i_rel, ks)
    captions = np.bincount(owner, minlength=n_image)
    rep = {"i2t": i2t, "t2i": t2i,
           "rsum": 100.0 * sum(i2t[f"r@{k}"] + t2i[f"r@{k}"] for k in ks),
           "images": int(n_image), "texts": int(n_text),
           "chance": {"i2t": {f"r@{k}": float(np.mean([chance_any(n_text, int(c), k)
                                                       for c in captions])) for k in ks},
                      "t2i": {f"r@{k}": min(1.0, k / n_image) for k in ks}}}
    return rep


def chance_any(n: int, relevant: int, k: int) -> float:
    """P(at least one of ``relevant`` items in a random top ``k`` of ``n``)."""
    if relevant <= 0:
        return 0.0
    k = min(k, n)
    return 1.0 - comb(n - relevant, k) / comb(n, k)


def folds(text_image: Sequence[int], n_images: int, n_folds: int = 5
          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """COCO's 1K protocol: ``n_folds`` blocks of consecutive images, each with its
    captions, as ``(image indices, caption indices)``; the figures are averaged over them."""
    if n_images % n_folds:
        raise ValueError(f"{n_images} images do not split into {n_folds} equal folds")
    owner = np.asarray(text_image, dtype=np.int64)
    size = n_images // n_folds
    out = []
    for f in range(n_folds):
        images = np.arange(f * size, (f + 1) * size)
        out.append((images, np.flatnonzero((owner >= images[0]) & (owner <= images[-1]))))
    return out


def folded_report(scores_t2i: np.ndarray, text_image: Sequence[int], n_folds: int = 5,
                  ks: Sequence[int] = DEFAULT_KS, scores_i2t: np.ndarray | None = None) -> dict:
    """The mean of :func:`recall_report` over :func:`folds` (COCO 1K with ``n_folds = 5``)."""
    scores = np.asarray(scores_t2i)
    other = scores if scores_i2t is None else np.asarray(scores_i2t)
    owner = np.asarray(text_image, dtype=np.int64)
    reports = []
    for images, texts in folds(owner, scores.shape[1], n_folds):
        block = np.ix_(texts, images)
        reports.append(recall_report(scores[block], owner[texts] - images[0], ks,
                                     scores_i2t=other[block]))

    def mean(path):
        vals = []
        for rep in reports:
            node = rep
            for p in path:
                node = node[p]
            vals.append(node)
        return float(np.mean(vals))
    out = {d: {key: mean((d, key)) for key in reports[0][d]} for d in ("i2t", "t2i")}
    out["rsum"] = mean(("rsum",))
    out["folds"] = n_folds
    out["images"], out["texts"] = reports[0]["images"], reports[0]["texts"]
    return out
