"""Choosing the protocol, distinct images, two-stage re-ranking, and the split report."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from daer_core.config.schema import EvalConfig
from daer_core.errors import ConfigError
from daer_core.evaluation.instance import recall_report
from daer_core.evaluation.protocol import (distinct_images, evaluate_split, mean_recall,
                                           rerank, resolve_protocol)
from daer_core.evaluation.retrieval import Embedded
from daer_core.interfaces import PairRecord


def rec(i: str, image_id: str | None = None, labels=(0,)) -> PairRecord:
    return PairRecord(id=i, text=f"text {i}", image="x.png", labels=tuple(labels),
                      image_id=image_id)


def test_auto_protocol_follows_the_data():
    one_each = [rec("a"), rec("b")]
    shared = [rec("a", "img1"), rec("b", "img1"), rec("c", "img2")]
    assert resolve_protocol("auto", [one_each], 3) == "category"
    assert resolve_protocol("auto", [one_each, shared], 3) == "instance"
    assert resolve_protocol("auto", [one_each], 0) == "instance"  # no classes at all
    assert resolve_protocol("instance", [one_each], 3) == "instance"
    assert resolve_protocol("category", [shared], 3) == "category"
    with pytest.raises(ConfigError, match="evaluate.protocol: category needs class labels"):
        resolve_protocol("category", [one_each], 0)


def test_distinct_images_keep_first_appearance():
    rows, owner = distinct_images(["p", "q", "p", "r", "q"], 5)
    assert rows.tolist() == [0, 1, 3]
    assert owner.tolist() == [0, 1, 0, 2, 1]
    rows, owner = distinct_images(None, 3)  # one image per pair
    assert rows.tolist() == [0, 1, 2] and owner.tolist() == [0, 1, 2]


def test_rerank_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q, g, k = rng.integers(1, 6), rng.integers(1, 12), rng.integers(1, 14)
        first = rng.integers(0, 4, size=(q, g)).astype(float)  # many ties
        second = rng.normal(size=(q, g)) * 10
        out = rerank(first, second, k)
        for row in range(q):
            order_first = sorted(range(g), key=lambda j: (-first[row, j], j))
            cand = order_first[:min(k, g)]
            rest = order_first[min(k, g):]
            expected = sorted(cand, key=lambda j: -second[row, j]) + rest
            got = sorted(range(g), key=lambda j: (-out[row, j], j))
            # candidates first, in the second stage's order; the rest in the first's
            assert set(got[:len(cand)]) == set(cand)
            assert [second[row, j] for j in got[:len(cand)]] == \
                [second[row, j] for j in expected[:len(cand)]]
            assert got[len(cand):] == rest


def test_rerank_with_k_covering_everything_is_the_second_stage():
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    out = rerank(first, second, 100)
    assert (np.argsort(-out, axis=1) == np.argsort(-second, axis=1)).all()


def test_mean_recall_is_rsum_over_the_number_of_recalls():
    scores = np.eye(3)
    rep = recall_report(scores, [0, 1, 2], ks=(1, 5))
    assert rep["rsum"] == pytest.approx(400.0)
    assert mean_recall(rep) == pytest.approx(1.0)


class CosineModel(torch.nn.Module):
    """A relation 'head' that scores pairs by the dot product (for evaluate_split)."""

    def __init__(self):
        super().__init__()
        self.relation = torch.nn.Identity()
        self.relation.emit_logits = True

    def score_matrix(self, text, image, block_size=256, bf16=False):
        return (text @ image.T).float().cpu()


def test_instance_split_report_counts_each_image_once():
    # 3 images; image 0 has two captions. Relation scores = dot products.
    text = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0]])
    image = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    emb = Embedded(["a", "b", "c", "d"], text, image, [(0,), (0,), (1,), (1,)],
                   ["i0", "i0", "i1", "i2"])
    rep, ranked = evaluate_split(CosineModel(), emb, EvalConfig(), "instance")
    inst = rep["instance"]
    assert inst["images"] == 3 and inst["texts"] == 4
    assert ranked.t2i.shape == (4, 3) and ranked.owner.tolist() == [0, 0, 1, 2]
    assert inst["t2i"]["r@1"] == pytest.approx(1.0)
    assert inst["i2t"]["r@1"] == pytest.approx(1.0)
    assert rep["score"] == pytest.approx(1.0)
    assert "avg" in rep  # the class view, with each image once in the gallery
    # the category protocol of the same embeddings: every pair in the gallery
    cat, ranked = evaluate_split(CosineModel(), emb, EvalConfig(), "category")
    assert ranked.t2i.shape == (4, 4) and "instance" not in cat
    assert cat["score"] == cat["avg"]


def test_rerank_k_reports_the_first_stage_beside_the_final_ranking():
    # both texts lie nearest image 1 by the cosine, so text 0 misses its own image 0; the
    # relation head (here a fixed score matrix) gets both right from k=2 candidates
    text = torch.tensor([[1.0, 0.2], [1.0, 0.2]])
    image = torch.tensor([[1.0, 0.1], [1.0, 0.2]])

    class Matching(CosineModel):
        def score_matrix(self, text, image, block_size=256, bf16=False):
            return torch.eye(2)

    emb = Embedded(["a", "b"], text, image, [(0,), (0,)], ["p", "q"])
    rep, ranked = evaluate_split(Matching(), emb, EvalConfig(rerank_k=2), "instance")
    assert rep["rerank_k"] == 2
    assert rep["instance"]["t2i"]["r@1"] == pytest.approx(1.0)
    assert rep["instance_first_stage"]["t2i"]["r@1"] == pytest.approx(0.5)
    assert ranked.first_stage is not None
    # with one candidate the relation head cannot repair the first stage's error
    rep, _ = evaluate_split(Matching(), emb, EvalConfig(rerank_k=1), "instance")
    assert rep["instance"]["t2i"]["r@1"] == pytest.approx(0.5)
