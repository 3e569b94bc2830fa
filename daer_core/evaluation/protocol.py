"""Which protocol judges a split, and its figures: category-level mAP or instance-level Recall@K.

The paper's protocol is **category-level**: every pair is a query and a gallery item, and
any item of the query's class is relevant (mAP@all). Flickr30k / COCO work is
**instance-level**: the gallery holds each image once, a caption's own image is its only
relevant item, and an image query is a hit at K when any of its captions is in the top K
(:mod:`.instance`). ``evaluate.protocol`` picks one; ``auto`` looks at the data (several
captions of one image, or no classes at all, mean instance-level).

Two-stage scoring (``evaluate.rerank_k``) is the way LAVIS, ALBEF and BLIP evaluate a
matching head: the cosine of the two embeddings ranks everything, and the relation head
re-scores each query's top ``k`` only. Both the first stage's and the re-ranked figures are
reported, so whether re-ranking helps is measured on the same run. The relation scores are
computed for every pair and then restricted to the candidates, which gives exactly the
re-scoring of candidates only (an evaluation split fits in memory; ``daer index`` scores only
candidates).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..interfaces import PairRecord
from .instance import folded_report, recall_report
from .metrics import retrieval_report
from .retrieval import Embedded, score_embedded

Protocol = Literal["category", "instance"]
#: how a split is scored: the relation head on every pair, or the cosine of the embeddings
Scorer = Literal["relation", "cosine"]


def resolve_protocol(setting: str, splits: Iterable[Sequence[PairRecord]],
                     num_classes: int) -> Protocol:
    """``evaluate.protocol`` for a dataset: ``auto`` is instance-level when some image has
    several captions in some split, or when there are no classes; else category-level."""
    if setting == "category" and num_classes == 0:
        raise ConfigError("evaluate.protocol: category needs class labels, and this dataset "
                          "has none; use instance (Recall@K) or auto")
    if setting in ("category", "instance"):
        return setting  # type: ignore[return-value]
    if num_classes == 0:
        return "instance"
    for records in splits:
        keys = [r.image_key for r in records]
        if len(set(keys)) < len(keys):
            return "instance"
    return "category"


def distinct_images(image_keys: Sequence[str] | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, owner)``: the row of each distinct image's first pair, in order of
    appearance, and for every pair the index of its image among them."""
    keys = list(image_keys) if image_keys is not None else [str(i) for i in range(n)]
    first: dict[str, int] = {}
    owner = np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)
    rows = np.empty(len(first), dtype=np.int64)
    for i in range(len(keys) - 1, -1, -1):
        rows[owner[i]] = i
    return rows, owner


def cosine_scores(text: torch.Tensor, image: torch.Tensor) -> np.ndarray:
    """``(texts, images)`` cosine similarities in float64 (a first stage, or a stage trained
    before its relation head)."""
    if text.shape[1] != image.shape[1]:
        raise ConfigError(
            f"cosine scoring needs both embeddings in one space, but texts have {text.shape[1]}"
            f" dimensions and images {image.shape[1]}; give both encoders the same out_dim "
            "(or unset evaluate.rerank_k)")
    t = F.normalize(text.double(), dim=1)
    i = F.normalize(image.double(), dim=1)
    return (t @ i.T).numpy()


def rerank(first: np.ndarray, second: np.ndarray, k: int) -> np.ndarray:
    """Per row: the ``k`` best items by ``first`` re-ordered by ``second`` and placed above
    every other item, which keep ``first``'s order (among ties at the ``k``-th place the
    lower column index is taken)."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    k = min(int(k), first.shape[1])
    order = np.argsort(-first, axis=1, kind="stable")[:, :k]
    rows = np.arange(first.shape[0])[:, None]
    out = first.copy()
    lift = float(first.max() - second.min()) + 1.0  # every candidate above every other item
    out[rows, order] = second[rows, order] + lift
    return out


def mean_recall(report: dict) -> float:
    """rsum / (100 x number of Recall values): a validation score in [0, 1]."""
    n = sum(key.startswith("r@") for d in ("i2t", "t2i") for key in report[d])
    return report["rsum"] / (100.0 * n)


@dataclass
class SplitScores:
    """The rankings behind a report, ``(texts, gallery)`` each: the gallery is every pair
    (category) or every distinct image (instance)."""

    #: ranks the text queries
    t2i: np.ndarray
    #: ranks the image queries (differs from ``t2i`` only when re-ranked per query)
    i2t: np.ndarray
    #: the gallery column of each text's own image
    owner: np.ndarray
    #: the cosine first stage, when re-ranked
    first_stage: np.ndarray | None = None


def evaluate_split(model, emb: Embedded, evaluate_config, protocol: Protocol, *,
                   device: torch.device | str = "cpu", scorer: Scorer = "relation",
                   with_category: bool = True) -> tuple[dict, SplitScores]:
    """The split's report under ``protocol`` and the rankings behind it.

    The report's ``score`` is the validation score (mAP average, or :func:`mean_recall` of
    the final ranking). Category-level reports are exactly ``retrieval_report``'s.
    """
    ec = evaluate_config
    if protocol == "category":
        scores = (cosine_scores(emb.text, emb.image) if scorer == "cosine" else
                  score_embedded(model, emb, block_size=ec.block_size, device=device,
                                 bf16=ec.bf16))
        rep = retrieval_report(scores, emb.labels, emb.labels, ks=ec.ks)
        return ({**rep, "score": rep["avg"]},
                SplitScores(scores, scores, np.arange(len(emb.ids))))
    rows, owner = distinct_images(emb.image_keys, len(emb.ids))
    images = emb.image[torch.as_tensor(rows)]
    first = cosine_scores(emb.text, images) if (scorer == "cosine" or ec.rerank_k) else None
    if scorer == "cosine":
        t2i = i2t = first
    else:
        gallery = Embedded([emb.ids[r] for r in rows], emb.text, images,
                           [emb.labels[r] for r in rows])
        relation = score_embedded(model, gallery, block_size=ec.block_size, device=device,
                                  bf16=ec.bf16).astype(np.float64)
        if ec.rerank_k:
            t2i = rerank(first, relation, ec.rerank_k)
            i2t = rerank(first.T, relation.T, ec.rerank_k).T
        else:
            t2i = i2t = relation
    rep: dict = {"protocol": "instance",
                 "instance": recall_report(t2i, owner, ec.recall_ks, scores_i2t=i2t)}
    if ec.folds:
        rep["instance_folds"] = folded_report(t2i, owner, ec.folds, ec.recall_ks,
                                              scores_i2t=i2t)
    if scorer == "relation" and ec.rerank_k:
        rep["rerank_k"] = int(ec.rerank_k)
        rep["instance_first_stage"] = recall_report(first, owner, ec.recall_ks)
    rep["score"] = mean_recall(rep["instance"])
    if with_category and any(emb.labels):
        # the class view of the same rankings, each image once in the gallery
        image_labels = [emb.labels[r] for r in rows]
        by_text = retrieval_report(t2i, emb.labels, image_labels, ks=ec.ks)
        by_image = (by_text if i2t is t2i else
                    retrieval_report(i2t, emb.labels, image_labels, ks=ec.ks))
        rep.update({"t2i": by_text["t2i"], "t2i_detail": by_text["t2i_detail"],
                    "i2t": by_image["i2t"], "i2t_detail": by_image["i2t_detail"]})
        rep["avg"] = (rep["i2t"] + rep["t2i"]) / 2
        rep["chance"] = (rep["i2t_detail"]["chance"] + rep["t2i_detail"]["chance"]) / 2
    return rep, SplitScores(t2i, i2t, owner, first if scorer == "relation" else None)
