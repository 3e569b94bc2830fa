"""mAP (Eq. 12), mAP@k, precision@k, the chance level and the PR curve."""
from __future__ import annotations

import numpy as np
import pytest

from daer_core.evaluation.metrics import (average_precision, chance_average_precision,
                                          chance_map, label_matrix, mean_average_precision,
                                          precision_at_k, precision_recall_curve, relevance,
                                          retrieval_report)


def test_average_precision_matches_equation_12_by_hand():
    # ranking: rel, not, rel, rel, not  -> R = 3
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    rel = np.array([[1, 0, 1, 1, 0]], dtype=bool)
    expected = (1 / 1 + 2 / 3 + 3 / 4) / 3
    assert average_precision(scores, rel)[0] == pytest.approx(expected)
    # scores decide the order, not the column order
    perm = [4, 2, 0, 3, 1]
    assert average_precision(scores[:, perm], rel[:, perm])[0] == pytest.approx(expected)


def test_map_at_k_and_precision_at_k():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    rel = np.array([[0, 1, 1, 0]], dtype=bool)
    # top-2: not, rel -> AP@2 = (1/2) / 1 ; P@2 = 1/2
    assert mean_average_precision(scores, rel, k=2) == pytest.approx(0.5)
    assert precision_at_k(scores, rel, 2) == pytest.approx(0.5)
    assert precision_at_k(scores, rel, 3) == pytest.approx(2 / 3)


def test_queries_without_relevant_items_are_excluded_not_zero():
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    rel = np.array([[1, 0], [0, 0]], dtype=bool)
    ap = average_precision(scores, rel)
    assert ap[0] == 1.0 and np.isnan(ap[1])
    assert mean_average_precision(scores, rel) == 1.0


def test_chance_level_is_the_expected_ap_of_random_rankings():
    rng = np.random.default_rng(0)
    rel = rng.random((40, 30)) < 0.25
    rel[:, 0] = True
    simulated = np.mean([mean_average_precision(rng.random(rel.shape), rel) for _ in range(400)])
    assert chance_map(rel) == pytest.approx(simulated, abs=0.01)
    # all items relevant -> every ranking is perfect
    assert chance_average_precision(np.ones((1, 7), bool))[0] == pytest.approx(1.0)


def test_relevance_is_shared_label_and_multi_label_aware():
    q = [(0,), (1, 2)]
    g = [(2,), (0, 1), (3,)]
    assert relevance(q, g).tolist() == [[False, True, False], [True, True, False]]
    assert label_matrix(np.array([1, 0])).tolist() == [[False, True], [True, False]]


def test_report_has_both_directions_average_and_chance():
    labels = [(0,), (1,), (0,), (1,)]
    perfect = np.array(relevance(labels, labels), dtype=float)
    rep = retrieval_report(perfect, labels, labels, ks=(1, 2))
    assert rep["i2t"] == rep["t2i"] == rep["avg"] == pytest.approx(1.0)
    assert 0 < rep["chance"] < 1
    assert rep["i2t_detail"]["map_at"]["1"] == 1.0


def test_precision_recall_curve_is_monotone_and_bounded():
    rng = np.random.default_rng(1)
    rel = rng.random((10, 20)) < 0.3
    rel[:, 0] = True
    recall, precision = precision_recall_curve(rng.random((10, 20)), rel)
    assert recall[0] == 0 and recall[-1] == 1
    assert np.all(np.diff(precision) <= 1e-12) and np.all((precision >= 0) & (precision <= 1))


@pytest.mark.parametrize("n, r", [(2, 1), (3, 1), (5, 2), (6, 3)])
def test_chance_level_equals_the_exact_average_over_every_ranking(n, r):
    """Mutation gap: a wrong harmonic number passed the simulation above (abs=0.01). Here the
    expected AP is the exact mean over all n! orders of a gallery with r relevant items."""
    from fractions import Fraction
    from itertools import permutations
    rel = [True] * r + [False] * (n - r)
    total = Fraction(0)
    orders = list(permutations(range(n)))
    for order in orders:
        hits, ap = 0, Fraction(0)
        for rank, item in enumerate(order, 1):
            if rel[item]:
                hits += 1
                ap += Fraction(hits, rank)
        total += ap / r
    exact = float(total / len(orders))
    assert chance_average_precision(np.array([rel]))[0] == pytest.approx(exact, rel=1e-12)
