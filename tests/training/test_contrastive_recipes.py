"""The two-tower `contrastive` (InfoNCE) and `vse` (hardest negative) recipes."""
from __future__ import annotations

import math

import pytest
import torch

from daer_core.config import load_run_config
from daer_core.training.api import train_and_evaluate
from plugins.recipes.contrastive import (LogitScale, cosine_matrix, excluded, info_nce,
                                         vse_loss)

SIM = torch.tensor([[0.9, 0.1, 0.4],
                    [0.2, 0.8, 0.7],
                    [0.3, 0.6, 0.5]])     # texts x images, positives on the diagonal
NONE = excluded(torch.eye(3), "all")


def test_info_nce_by_hand():
    s = torch.tensor(2.0)
    rows = [-math.log(math.exp(2 * SIM[i, i]) / sum(math.exp(2 * SIM[i, j]) for j in range(3)))
            for i in range(3)]
    cols = [-math.log(math.exp(2 * SIM[j, j]) / sum(math.exp(2 * SIM[i, j]) for i in range(3)))
            for j in range(3)]
    expected = 0.5 * (sum(rows) / 3 + sum(cols) / 3)
    assert float(info_nce(SIM, s, NONE)) == pytest.approx(expected, rel=1e-6)


def test_vse_hardest_negative_by_hand():
    # margin 0.2. text i vs images j: row 0: [.2-.9+.1]+,[.2-.9+.4]+ -> 0, 0; row 1: .2-.8+.2=-.4,
    # .2-.8+.7=.1 -> max .1; row 2: .2-.5+.3=0, .2-.5+.6=.3 -> .3
    # image j vs texts i: col 0: .2-.9+.2, .2-.9+.3 -> 0; col 1: .2-.8+.1, .2-.8+.6 -> 0;
    # col 2: .2-.5+.4=.1, .2-.5+.7=.4 -> .4
    assert float(vse_loss(SIM, 0.2, True, NONE)) == pytest.approx(0.1 + 0.3 + 0.4)
    # every negative (VSE0): rows .1 + .3, columns .1 + .4
    assert float(vse_loss(SIM, 0.2, False, NONE)) == pytest.approx(0.1 + 0.3 + 0.1 + 0.4)
    assert float(vse_loss(SIM, 0.2, True, NONE, "mean")) == pytest.approx(0.8 / 3)


def test_same_label_pairs_are_not_each_others_negatives():
    labels = torch.tensor([[1, 0], [0, 1], [0, 1]])    # pairs 1 and 2 share a class
    skip = excluded(labels, "same-label")
    assert skip.tolist() == [[True, False, False], [False, True, True], [False, True, True]]
    # with 1 and 2 out of each other's negatives, only pair 0 is left for them:
    # rows: 1 -> [.2-.8+.2]+ = 0; 2 -> [.2-.5+.3]+ = 0; cols: 1 -> [.2-.8+.1]+ = 0;
    # 2 -> [.2-.5+.4] = .1; row/col 0 as before (0)
    assert float(vse_loss(SIM, 0.2, True, skip)) == pytest.approx(0.1)
    logits_left = info_nce(SIM, torch.tensor(1.0), skip)
    assert torch.isfinite(logits_left)


def test_cosines_and_a_clamped_learnable_scale():
    t = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    v = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    assert cosine_matrix(t, v).flatten().tolist() == pytest.approx(
        [1 / math.sqrt(2), 0.0, 1 / math.sqrt(2), 1.0])
    scale = LogitScale(0.07, learnable=True, max_scale=100.0)
    assert float(scale().detach()) == pytest.approx(1 / 0.07)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert float(scale().detach()) == pytest.approx(100.0)
    assert not list(LogitScale(0.07, learnable=False, max_scale=100).parameters())


@pytest.mark.parametrize("recipe", ["contrastive", "vse"])
def test_a_two_tower_preset_trains_on_shapes(tmp_path, tiny_config, recipe):
    cfg = tiny_config()
    cfg["preset"] = f"{recipe}-shapes"
    cfg["pipeline"]["relation"] = {"name": "cosine", "params": {"mapping": "affine"}}
    cfg["pipeline"]["image"]["encoder"]["params"]["out_dim"] = 16
    cfg["train"]["stages"] = {recipe: {"epochs": 2, "batch_size": 8, "warmup_steps": 0,
                                       "optimizer": {"name": "adam", "lr": 1e-3}}}
    metrics = train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    assert 0.0 <= metrics["avg"] <= 1.0
    import json
    events = [json.loads(line) for line in
              (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["stage"] for e in epochs] == [recipe, recipe]
    assert all(math.isfinite(e["train_loss"]) and "val_avg" in e for e in epochs)
