"""Tie-aware ranking metrics (issue 14): ties are scored by their expectation over every
order of the tied items, so a constant model scores exactly chance."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from daer_core.evaluation.metrics import (average_precision, chance_map, precision_at_k,
                                          relevance, retrieval_report)


def _plain_ap(scores_row, rel_row, k=None):
    """Eq. 12 for one fixed order (no ties to resolve)."""
    rel = np.asarray(rel_row)[np.argsort(-np.asarray(scores_row), kind="stable")]
    cut = rel[:k] if k else rel
    hits = np.cumsum(cut)
    denom = rel.sum() if k is None else cut.sum()
    return (hits / np.arange(1, len(cut) + 1) * cut).sum() / denom if denom else 0.0


def test_a_constant_model_scores_exactly_chance_on_a_class_sorted_gallery():
    labels = np.repeat(np.arange(20), 5)  # 100 items, 20 classes, sorted like Pascal splits
    scores = np.full((100, 100), 0.5)
    rep = retrieval_report(scores, labels, labels)
    assert rep["chance"] == pytest.approx(0.0902, abs=5e-4)
    assert rep["i2t"] == pytest.approx(rep["chance"], rel=1e-12)
    assert rep["t2i"] == pytest.approx(rep["chance"], rel=1e-12)
    # precision@k of a constant model is the share of relevant items, exactly
    assert rep["t2i_detail"]["precision_at"]["10"] == pytest.approx(0.05, rel=1e-12)


def test_tied_scores_get_the_average_over_every_order_of_the_tie():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 3, size=(1, 7)).astype(float)  # many ties
        rel = rng.random((1, 7)) < 0.4
        if not rel.any():
            continue
        expected_ap, expected_at3, expected_p3 = [], [], []
        for perm in itertools.permutations(range(7)):
            # break ties by this order: a tiny, order-giving offset within each tie group
            broken = scores[0] + 1e-6 * (7 - np.argsort(perm))
            expected_ap.append(_plain_ap(broken, rel[0]))
            order = np.argsort(-broken, kind="stable")
            expected_p3.append(rel[0][order][:3].mean())
        got = average_precision(scores, rel)[0]
        assert got == pytest.approx(np.mean(expected_ap), rel=1e-9)
        assert precision_at_k(scores, rel, 3) == pytest.approx(np.mean(expected_p3), rel=1e-9)


def test_without_ties_the_metrics_are_the_plain_ranked_ones():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=30)
    scores = rng.random((30, 30))
    rel = relevance(labels, labels)
    ap = average_precision(scores, rel)
    assert ap == pytest.approx([_plain_ap(s, r) for s, r in zip(scores, rel)], rel=1e-12)
    ap5 = average_precision(scores, rel, k=5)
    assert ap5 == pytest.approx([_plain_ap(s, r, 5) for s, r in zip(scores, rel)], rel=1e-12)
    assert chance_map(rel) < np.nanmean(average_precision(
        np.where(rel, 1.0, 0.0) + 1e-3 * scores, rel))


def test_evaluation_ranks_on_logits_where_the_sigmoid_saturates():
    """float32 sigmoid of logits above ~17 is exactly 1.0: distinct scores became ties."""
    from plugins.relation.mlp import MLPRelation, MLPRelationParams
    head = MLPRelation(MLPRelationParams(hidden=[3]), 4)
    with torch.no_grad():
        for m in head.net:
            if isinstance(m, torch.nn.Linear):
                m.weight.fill_(1.0)
                m.bias.fill_(20.0)
    fused = torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]])
    assert torch.unique(head(fused)).numel() == 1  # saturated: a three-way tie
    head.emit_logits = True
    logits = head(fused)
    assert torch.unique(logits).numel() == 3 and torch.all(logits[1:] > logits[:-1])
