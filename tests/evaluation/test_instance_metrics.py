"""Instance-level Recall@K, rsum and ranks against brute force (every order of the ties)."""
from __future__ import annotations

from fractions import Fraction
from itertools import permutations

import numpy as np
import pytest

from daer_core.evaluation.instance import (chance_any, folded_report, folds, recall_report)


def brute(scores_row, relevant_row, k):
    """Exact P(hit@k) and E[first relevant rank] over every order of tied items."""
    scores_row = list(scores_row)
    n = len(scores_row)
    hits, ranks, count = Fraction(0), Fraction(0), 0
    for perm in permutations(range(n)):
        # a ranking consistent with the scores: sort by score, ties in `perm` order
        order = sorted(range(n), key=lambda i: (-scores_row[i], perm.index(i)))
        first = 1 + next(p for p, i in enumerate(order) if relevant_row[i])
        hits += first <= k
        ranks += first
        count += 1
    return float(hits / count), float(ranks / count)


@pytest.mark.parametrize("seed", range(6))
def test_recall_and_ranks_match_brute_force_with_several_captions_and_ties(seed):
    rng = np.random.default_rng(seed)
    n_images = 3
    text_image = np.array([0, 0, 1, 1, 1, 2])            # several captions per image
    scores = rng.integers(0, 3, size=(6, n_images)).astype(float)   # many ties
    rep = recall_report(scores, text_image, ks=(1, 2))
    rel = text_image[:, None] == np.arange(n_images)[None, :]
    for direction, s, r in (("t2i", scores, rel), ("i2t", scores.T, rel.T)):
        for k in (1, 2):
            exact = np.mean([brute(s[q], r[q], k)[0] for q in range(len(s))])
            assert rep[direction][f"r@{k}"] == pytest.approx(exact), (direction, k)
        ranks = [brute(s[q], r[q], 1)[1] for q in range(len(s))]
        assert rep[direction]["meanr"] == pytest.approx(np.mean(ranks))
        assert rep[direction]["medr"] == pytest.approx(np.median(ranks))
    assert rep["rsum"] == pytest.approx(100 * sum(rep[d][f"r@{k}"] for d in ("i2t", "t2i")
                                                  for k in (1, 2)))


def test_any_caption_counts_for_an_image_query():
    # image 0's captions: text 0 ranked 3rd, text 1 ranked 1st -> a hit at 1
    scores = np.array([[0.1, 0.0], [0.9, 0.0], [0.5, 1.0], [0.3, 0.8]])
    rep = recall_report(scores, [0, 0, 1, 1], ks=(1,))
    assert rep["i2t"]["r@1"] == 1.0 and rep["i2t"]["medr"] == 1.0


def test_a_constant_scorer_scores_chance():
    text_image = np.repeat(np.arange(10), 5)
    rep = recall_report(np.zeros((50, 10)), text_image)
    for k in (1, 5, 10):
        assert rep["t2i"][f"r@{k}"] == pytest.approx(rep["chance"]["t2i"][f"r@{k}"])
        assert rep["i2t"][f"r@{k}"] == pytest.approx(rep["chance"]["i2t"][f"r@{k}"])
    assert rep["chance"]["i2t"]["r@1"] == pytest.approx(chance_any(50, 5, 1)) == 0.1


def test_coco_1k_folds_are_consecutive_images_with_their_captions():
    owner = np.repeat(np.arange(5000), 5)
    parts = folds(owner, 5000)
    assert len(parts) == 5
    for f, (images, texts) in enumerate(parts):
        assert images.tolist() == list(range(1000 * f, 1000 * (f + 1)))
        assert texts.tolist() == list(range(5000 * f, 5000 * (f + 1)))
    with pytest.raises(ValueError, match="equal folds"):
        folds(owner[:15], 3, 5)


def test_folded_report_is_the_mean_of_the_folds():
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(10), 2)
    scores = rng.random((20, 10))
    rep = folded_report(scores, owner, n_folds=2, ks=(1,))
    parts = [recall_report(scores[np.ix_(t, i)], owner[t] - i[0], ks=(1,))
             for i, t in folds(owner, 10, 2)]
    assert rep["t2i"]["r@1"] == pytest.approx(np.mean([p["t2i"]["r@1"] for p in parts]))
    assert rep["rsum"] == pytest.approx(np.mean([p["rsum"] for p in parts]))
    assert rep["images"] == 5 and rep["texts"] == 10


def test_bad_ownership_is_named():
    with pytest.raises(ValueError, match="text_image"):
        recall_report(np.zeros((3, 2)), [0, 1, 2])
