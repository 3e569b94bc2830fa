"""The ``mcsm`` baseline (Peng, Qi & Yuan, TIP 2018) as a recipe: the recurrent attention,
the ranking loss of each semantic space and the adaptive fusion on hand-computed cases;
retrieval far above chance on synthetic features and on ``shapes`` (raw inputs); exact
resume; the plugin listed and documented."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from recipe_toys import epochs_of
from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.interfaces import TrainBatch
from daer_core.training.api import train_and_evaluate
from daer_core.training.trainer import Trainer
from plugins.recipes.mcsm import MCSM, MCSMParams, mismatched, ranking_loss, space_sims
from plugins.recipes.mcsm_networks import (AttentionPool, MCSMFusion, MCSMFusionParams,
                                           MCSMVectorParams, MCSMVectorTextEncoder,
                                           adaptive_fusion, arrange)

from test_feature_training import write_features


def mcsm_config(root: str, epochs: int = 4, lr: float = 3e-3, **params) -> dict:
    """The ``mcsm`` preset on a synthetic features set, at toy sizes."""
    enc = {"name": "mcsm-vector", "params": {"dim": 16, "hidden": [32]}}
    return {"preset": "mcsm", "seed": 0,
            "dataset": {"name": "features", "params": {"root": root}},
            "pipeline": {"text": {"encoder": enc}, "image": {"encoder": enc}},
            "train": {"device": "cpu", "threads": 1,
                      "recipe": {"name": "mcsm", "params": params},
                      "stages": {"mcsm": {"epochs": epochs, "batch_size": 16,
                                          "optimizer": {"name": "adam", "lr": lr}}}},
            "evaluate": {"examples": 0}}


# -- the recurrent attention ---------------------------------------------------------------

def test_attention_is_softmax_of_w_tanh_Wa_H_and_weights_the_states():
    pool = AttentionPool(2, 2)
    with torch.no_grad():
        pool.W_a.weight.copy_(torch.eye(2))
        pool.w.weight.copy_(torch.tensor([[1.0, 0.0]]))
    h = torch.tensor([[[0.0, 5.0], [1.0, 1.0], [2.0, -3.0]]])
    # scores: tanh of the first coordinate: 0, tanh 1, tanh 2
    e = torch.tensor([0.0, math.tanh(1.0), math.tanh(2.0)])
    a = torch.softmax(e, 0)
    assert torch.allclose(pool.weights(h)[0], a)
    assert torch.allclose(pool(h)[0], (a.unsqueeze(1) * h[0]).sum(0))
    # a masked position gets no weight; the others renormalise
    mask = torch.tensor([[True, True, False]])
    a2 = torch.softmax(e[:2], 0)
    assert torch.allclose(pool.weights(h, mask)[0], torch.cat([a2, torch.zeros(1)]))
    assert torch.allclose(pool(h, mask)[0], a2[0] * h[0, 0] + a2[1] * h[0, 1])


def test_vector_encoders_put_the_image_space_first():
    own, other = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
    assert arrange("image", own, other).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert arrange("text", own, other).tolist() == [[3.0, 4.0, 1.0, 2.0]]
    enc = MCSMVectorTextEncoder(MCSMVectorParams(dim=3, steps=2, hidden=[4]))
    out = enc({"features": torch.randn(5, 6)})
    assert out.shape == (5, 6) and enc.out_dim == 6
    odd = MCSMVectorTextEncoder(MCSMVectorParams(dim=3, steps=2, normalize="none"))
    with pytest.raises(ConfigError, match="chunks"):
        odd({"features": torch.randn(5, 7)})


# -- the ranking loss of one space ---------------------------------------------------------

def test_ranking_loss_on_a_hand_computed_case():
    # sim[a, b] = sim(image a, text b); items 0 and 1 share class 0, item 2 is class 1
    sim = torch.tensor([[0.9, 0.5, 0.8],
                        [0.1, 0.6, 0.2],
                        [0.7, 0.3, 0.4]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = 0.2
    # image anchors (rows): i0 vs t2: 0.2 - 0.9 + 0.8 = 0.1; i1 vs t2: 0.2 - 0.6 + 0.2 = -0.2
    #   -> 0; i2 vs {t0, t1}: 0.2 - 0.4 + 0.7 = 0.5, 0.2 - 0.4 + 0.3 = 0.1 -> mean 0.3
    image_terms = [0.1, 0.0, 0.3]
    # text anchors (columns): t0 vs i2: 0.2 - 0.9 + 0.7 = 0.0; t1 vs i2: 0.2 - 0.6 + 0.3 = -0.1
    #   -> 0; t2 vs {i0, i1}: 0.2 - 0.4 + 0.8 = 0.6, 0.2 - 0.4 + 0.2 = 0 -> mean 0.3
    text_terms = [0.0, 0.0, 0.3]
    expected = sum(image_terms) / 3 + sum(text_terms) / 3
    assert ranking_loss(sim, labels, m).item() == pytest.approx(expected, abs=1e-6)
    # hardest: i2 keeps 0.5, t2 keeps 0.6
    assert ranking_loss(sim, labels, m, "hardest").item() == pytest.approx(
        (0.1 + 0.5) / 3 + 0.6 / 3, abs=1e-6)
    # one class everywhere: no mismatched item, no loss
    assert ranking_loss(sim, torch.ones(3, 1), m).item() == 0.0
    assert mismatched(labels).tolist() == [[False, False, True], [False, False, True],
                                           [True, True, False]]


def test_the_recipe_sums_the_two_spaces_losses_on_their_own_halves():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.text_encoder = nn.Identity()
            self.image_encoder = nn.Identity()
            self.text_encoder.out_dim = self.image_encoder.out_dim = 4

        def encode_text(self, x):
            return x["features"]

        def encode_image(self, x):
            return x

    torch.manual_seed(0)
    image, text = torch.randn(4, 4), torch.randn(4, 4)
    labels = torch.eye(2)[[0, 1, 0, 1]]
    recipe = MCSM(MCSMParams(margin=0.3, image_space_weight=2.0, text_space_weight=0.5))
    model = Toy()
    assert recipe.setup(model, 2, False) == {}
    batch = TrainBatch(ids=list("abcd"), text={"features": text}, images=image, labels=labels)
    terms = recipe.losses("mcsm", "main", model, nn.ModuleDict(), batch)
    cos = lambda a, b: nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T  # noqa: E731
    l_i = ranking_loss(cos(image[:, :2], text[:, :2]), labels, 0.3)
    l_t = ranking_loss(cos(image[:, 2:], text[:, 2:]), labels, 0.3)
    assert terms["image_space"].item() == pytest.approx(l_i.item(), rel=1e-6)
    assert terms["text_space"].item() == pytest.approx(l_t.item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(2.0 * l_i.item() + 0.5 * l_t.item(), rel=1e-6)
    si, st = space_sims(image, text)
    assert torch.allclose(si, cos(image[:, :2], text[:, :2]))


# -- the adaptive fusion -------------------------------------------------------------------

def test_adaptive_fusion_weights_each_similarity_by_the_other_normalised():
    sim_i, sim_t = torch.tensor([0.6, -1.0, 1.0]), torch.tensor([0.2, 0.5, 1.0])
    # r = (s + 1) / 2: r_i = [0.8, 0, 1], r_t = [0.6, 0.75, 1]
    expected = torch.tensor([0.6 * 0.6 + 0.8 * 0.2, 0.75 * -1.0 + 0.0, 2.0])
    assert torch.allclose(adaptive_fusion(sim_i, sim_t), expected)
    assert torch.equal(adaptive_fusion(sim_i, sim_t, "image"), sim_i)
    assert torch.equal(adaptive_fusion(sim_i, sim_t, "text"), sim_t)
    assert torch.allclose(adaptive_fusion(sim_i, sim_t, "sum"), sim_i + sim_t)


def test_the_relation_fuses_the_cosines_of_the_halves():
    rel = MCSMFusion(MCSMFusionParams(), text_dim=4, image_dim=4)
    text = torch.tensor([[1.0, 0.0, 0.0, 2.0]])
    image = torch.tensor([[3.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, -1.0]])
    # image space: cos([1,0], [3,0]) = 1, cos([1,0], [0,1]) = 0
    # text space: cos([0,2], [1,1]) = 1/sqrt2, cos([0,2], [0,-1]) = -1
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[(s + 1) / 2 * 1.0 + 1.0 * s, 0.0 * 0.0 + 0.5 * -1.0]])
    assert torch.allclose(rel.score(text, image), expected, atol=1e-6)
    assert torch.allclose(rel(text.expand(2, 4), image), expected[0], atol=1e-6)
    with pytest.raises(Exception, match="mcsm-fusion"):
        MCSMFusion(MCSMFusionParams(), text_dim=3, image_dim=3)


# -- through the trainer -------------------------------------------------------------------

def test_mcsm_retrieves_far_above_chance_on_synthetic_features(tmp_path):
    root = write_features(tmp_path / "f.npz")
    metrics = train_and_evaluate(load_run_config(mcsm_config(root, epochs=5)), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.4
    log = epochs_of(tmp_path / "run")
    assert {"train_loss", "train_image_space", "train_text_space"} <= set(log[0])


def test_mcsm_resumes_exactly(tmp_path, monkeypatch):
    root = write_features(tmp_path / "f.npz")

    def cfg():
        return load_run_config(mcsm_config(root, epochs=3))

    straight = Trainer(cfg(), tmp_path / "straight")
    straight.train()
    calls = {"n": 0}
    real = Trainer._train_epoch

    def dying(self, stage, optimizers):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, stage, optimizers)

    monkeypatch.setattr(Trainer, "_train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg(), tmp_path / "killed").train()
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    resumed = Trainer(cfg(), tmp_path / "killed")
    resumed.train(resume=True)

    def losses(run):
        return {e["epoch"]: {k: v for k, v in e.items() if k.startswith("train_")}
                for e in epochs_of(run)}

    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")
    assert len(losses(tmp_path / "straight")) == 3
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_mcsm_needs_its_fusion_relation(tmp_path):
    root = write_features(tmp_path / "f.npz")
    raw = mcsm_config(root, epochs=1)
    raw["pipeline"]["relation"] = {"name": "cosine"}
    with pytest.raises(ConfigError, match="mcsm-fusion"):
        Trainer(load_run_config(raw), tmp_path / "run").train()


def test_mcsm_shapes_preset_trains_far_above_chance_on_raw_pairs(tmp_path):
    # colour classes without distractor objects: learnable from random backbone weights in
    # a few dozen steps on CPU
    raw = {"preset": "mcsm-shapes", "seed": 0,
           "dataset": {"name": "shapes", "params": {"num_pairs": 200, "num_classes": 4,
                                                    "label_scheme": "colour",
                                                    "distractor_prob": 0.0,
                                                    "split_sizes": [128, 24, 48],
                                                    "image_size": 32, "seed": 1}},
           "pipeline": {"text": {"encoder": {"name": "mcsm-words",
                                             "params": {"dim": 16, "vector_size": 16,
                                                        "cnn_channels": 16}}},
                        "image": {"encoder": {"name": "mcsm-image",
                                              "params": {"model": "mobilenetv3_small_050",
                                                         "dim": 16, "hidden": [32]}}}},
           "train": {"device": "cpu", "threads": 1,
                     "stages": {"mcsm": {"epochs": 6, "batch_size": 16,
                                         "optimizer": {"name": "adam", "lr": 1e-2}}}},
           "evaluate": {"examples": 0}}
    metrics = train_and_evaluate(load_run_config(raw), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.3


def test_plugins_list_and_show_document_mcsm(capsys):
    from daer_core.cli.main import main
    main(["plugins", "list"])
    out = capsys.readouterr().out
    for name in ("mcsm", "mcsm-fusion", "mcsm-vector", "mcsm-image", "mcsm-words",
                 "mcsm-shapes"):
        assert name in out
    main(["plugins", "show", "mcsm", "--kind", "recipe"])
    out = capsys.readouterr().out
    for field in ("margin", "negatives", "image_space_weight", "text_space_weight"):
        assert field in out
