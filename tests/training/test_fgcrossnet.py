"""FGCrossNet as a recipe (``fgcrossnet``): every loss term on small hand-computed cases, the
shared network, retrieval far above chance on synthetic features, exact resume, and the CLI
listing."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipe_toys import Identity, ToyModel, epochs_of  # noqa: F401
from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.interfaces import TrainBatch
from daer_core.training.api import train_and_evaluate
from daer_core.training.trainer import Trainer
from plugins.recipes.cm_gans import linear_layers
from plugins.recipes.fgcrossnet import (FGCrossNet, FGCrossNetParams, center_loss, euclidean,
                                        quadruplet_loss, quadruplet_terms, scale_gradient)

from test_feature_training import write_features


def fgcrossnet_config(root: str, epochs: int = 6, lr: float = 0.03, **params) -> dict:
    """The ``fgcrossnet`` preset on a synthetic features set, at toy sizes."""
    enc = {"name": "vector-mlp", "params": {"hidden": [32, 32], "out_dim": 16}}
    return {"preset": "fgcrossnet", "seed": 0,
            "dataset": {"name": "features", "params": {"root": root}},
            "pipeline": {"text": {"encoder": enc}, "image": {"encoder": enc}},
            "train": {"device": "cpu", "threads": 1,
                      "recipe": {"name": "fgcrossnet", "params": params},
                      "stages": {"fgcrossnet": {"epochs": epochs, "batch_size": 16,
                                                "optimizer": {"name": "sgd", "lr": lr}}}},
            "evaluate": {"examples": 0}}



# -- the terms on hand-computed cases --------------------------------------------------------

def test_center_loss_is_the_mean_squared_distance_to_the_class_centre():
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    centers = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    classes = torch.tensor([0, 1, 1])
    # ||(1,0)-(0,0)||^2 = 1, ||(0,2)-(1,1)||^2 = 2, ||(3,3)-(1,1)||^2 = 8 -> 11 / 3
    assert center_loss(feats, classes, centers).item() == pytest.approx(11 / 3)


def test_scale_gradient_is_the_identity_forwards_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = scale_gradient(x, 1000.0)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1000.0, 3000.0]))


def test_quadruplet_hinges_on_a_hand_computed_case():
    # 1-d points 0, 1 (class 0), 3 (class 1), 7 (class 2): distances
    #   d01 = 1, d02 = 3, d03 = 7, d12 = 2, d13 = 6, d23 = 4
    # quadruplets (i, j, k, l): i, j the class-0 pair (both orders), (k, l) = (2, 3) or (3, 2)
    feats = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    classes = torch.tensor([0, 0, 1, 2])
    # first hinge, margin 3: [d_ij - d_ik + 3]_+ for (0,1,2,.) = 1, (0,1,3,.) = 0,
    # (1,0,2,.) = 1 - 2 + 3 = 2, (1,0,3,.) = 0 -> violated by 2 quadruplets, mean (1 + 2) / 2
    # second hinge, margin 3.5: [d_ij - d_kl + 3.5]_+ = 1 - 4 + 3.5 = 0.5 for all four
    first, second = quadruplet_terms(feats, classes, 3.0, 3.5)
    assert first.item() == pytest.approx(1.5, rel=1e-5)
    assert second.item() == pytest.approx(0.5, rel=1e-5)
    assert quadruplet_loss(feats, classes, 3.0, 3.5).item() == pytest.approx(2.0, rel=1e-5)
    # the paper's margins (1 and 0.5) are all satisfied here: no violation, no loss
    first, second = quadruplet_terms(feats, classes, 1.0, 0.5)
    assert first.item() == 0.0 and second.item() == 0.0
    # one class only (or every item of its own class): no quadruplet at all
    assert quadruplet_loss(feats, torch.zeros(4, dtype=torch.long), 1.0, 0.5).item() == 0.0
    assert quadruplet_loss(feats, torch.arange(4), 1.0, 0.5).item() == 0.0


def brute_force_quadruplets(feats, classes, m1, m2):
    """Every quadruplet enumerated, each hinge averaged over the quadruplets violating it."""
    d = euclidean(feats)
    y = classes.tolist()
    h1, h2 = [], []
    for i, j, k, l in itertools.permutations(range(len(y)), 4):
        if y[i] == y[j] and y[k] != y[i] and y[l] != y[i] and y[k] != y[l]:
            h1.append(max(0.0, float(d[i, j] - d[i, k]) + m1))
            h2.append(max(0.0, float(d[i, j] - d[k, l]) + m2))
    mean = lambda h: (sum(h) / sum(v > 0 for v in h)) if any(v > 0 for v in h) else 0.0  # noqa
    return mean(h1), mean(h2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadruplet_terms_equal_the_enumeration_of_every_quadruplet(seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(9, 3, generator=g)
    classes = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0])
    first, second = quadruplet_terms(feats, classes, 1.0, 0.5)
    e1, e2 = brute_force_quadruplets(feats, classes, 1.0, 0.5)
    assert first.item() == pytest.approx(e1, rel=1e-5)
    assert second.item() == pytest.approx(e2, rel=1e-5)


def test_quadruplet_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(7, 2, generator=g, dtype=torch.float64)
    classes = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    x = feats.clone().requires_grad_(True)
    quadruplet_loss(x, classes, 1.0, 0.5).backward()
    eps = 1e-6
    for idx in [(0, 0), (2, 1), (6, 0)]:
        up, down = feats.clone(), feats.clone()
        up[idx] += eps
        down[idx] -= eps
        numeric = (quadruplet_loss(up, classes, 1.0, 0.5)
                   - quadruplet_loss(down, classes, 1.0, 0.5)) / (2 * eps)
        assert x.grad[idx].item() == pytest.approx(numeric.item(), rel=1e-3, abs=1e-4)


def _toy_recipe(**params):
    recipe = FGCrossNet(FGCrossNetParams(shared_layers=0, **params))
    model = ToyModel(2)
    extras = nn.ModuleDict(recipe.setup(model, num_classes=3, multi_label=False))
    with torch.no_grad():
        extras["label"].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        extras["label"].bias.zero_()
        extras["centers"].centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]))
    return recipe, model, extras


def test_fgcrossnet_terms_combine_as_documented():
    recipe, model, extras = _toy_recipe(center_weight=0.01, center_update=0.5,
                                        rank_weight=0.2, margin1=2.0, margin2=1.0)
    img = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    txt = torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    labels = torch.eye(3)[[0, 1, 2]]
    batch = TrainBatch(ids=list("abc"), text={"features": txt}, images=img, labels=labels)
    terms = recipe.losses("fgcrossnet", "main", model, extras, batch)
    # classification: the classifier scores (x, y, -x-y); cross entropy of images + of texts
    logits = lambda v: torch.stack([v[:, 0], v[:, 1], -v.sum(1)], 1)  # noqa: E731
    y = torch.tensor([0, 1, 2])
    cla = F.cross_entropy(logits(img), y) + F.cross_entropy(logits(txt), y)
    assert terms["cla"].item() == pytest.approx(cla.item(), rel=1e-6)
    # centre: items (images then texts) against centres (0,0), (1,0), (0,3):
    #   images 0, 1 + 0 = 1, 4 + 9 = 13; texts 1, 4, 1 -> 20 / 6
    assert terms["center"].item() == pytest.approx(20 / 6, rel=1e-6)
    feats, classes = torch.cat([img, txt]), y.repeat(2)
    first, second = quadruplet_terms(feats, classes, 2.0, 1.0)
    assert terms["quad_anchor"].item() == pytest.approx(first.item(), rel=1e-6)
    assert terms["quad_pair"].item() == pytest.approx(second.item(), rel=1e-6)
    assert terms["rank"].item() == pytest.approx((first + second).item(), rel=1e-6)
    assert first.item() > 0 and second.item() > 0
    assert terms["loss"].item() == pytest.approx(
        (cla + 0.01 * 20 / 6 + 0.2 * (first + second)).item(), rel=1e-6)
    # the centres move by center_update x the centre term's gradient, the network by
    # center_weight x it
    terms["loss"].backward()
    centers = extras["centers"].centers.detach().clone().requires_grad_(True)
    center_loss(feats, classes, centers).backward()
    assert torch.allclose(extras["centers"].centers.grad, 0.5 * centers.grad, atol=1e-6)


def test_fgcrossnet_needs_one_class_per_pair():
    recipe = FGCrossNet()
    with pytest.raises(ConfigError, match="one class per pair"):
        recipe.setup(ToyModel(2), num_classes=3, multi_label=True)


# -- one network above the input layers -----------------------------------------------------

def _mlp_model(hidden):
    from plugins.vectors.mlp import VectorImageEncoder, VectorMLPParams, VectorTextEncoder

    enc = VectorMLPParams(hidden=hidden, out_dim=2)
    model = ToyModel(2)
    model.text_encoder, model.image_encoder = VectorTextEncoder(enc), VectorImageEncoder(enc)
    model.encode_image(torch.randn(4, 5))        # input widths: image 5, text 3
    model.encode_text({"features": torch.randn(4, 3)})
    return model


@pytest.mark.parametrize("shared, expected", [(None, 2), (1, 1), (0, 0)])
def test_every_layer_above_the_first_is_shared_by_default(shared, expected):
    model = _mlp_model([4, 3])
    FGCrossNet(FGCrossNetParams(shared_layers=shared)).setup(model, 2, False)
    (tnet, tidx), (inet, iidx) = (linear_layers(model.text_encoder),
                                  linear_layers(model.image_encoder))
    assert inet[iidx[0]] is not tnet[tidx[0]]     # the input layer reads its own width
    assert sum(inet[i] is tnet[t] for i, t in zip(iidx[1:], tidx[1:])) == expected


# -- raw inputs: texts read by the image network --------------------------------------------

def _char_grid_model(text_backbone: dict | None = None):
    import registry

    image_params = {"model": "mobilenetv3_small_050", "out_dim": 8}
    text = registry.create("text_encoder", "char-grid", {
        "length": 32, "backbone": "timm",
        "backbone_params": image_params if text_backbone is None else text_backbone})
    model = ToyModel(8)
    model.text_encoder = text
    model.image_encoder = registry.create("image_encoder", "timm", image_params)
    return model


def test_char_grid_turns_texts_into_square_maps_of_the_alphabet():
    model = _char_grid_model()
    enc = model.text_encoder
    ids = enc.prepare(["Ab c!", "\u00e9x" + "z" * 40])["chars"]
    assert ids.shape == (2, 32) and ids.dtype == torch.long
    # lowercased, one id per alphabet character (space = 1, a = 2, ...), 0 = padding;
    # characters outside the alphabet are dropped, long texts truncated
    assert ids[0, :6].tolist() == [2, 3, 1, 4, 41, 0]   # "!" is the 41st character
    assert ids[1, 0] == enc.index["x"] and ids[1, 1:].eq(enc.index["z"]).all()
    grid = enc.grid({"chars": ids})
    assert grid.shape == (2, 3, 32, 32)
    assert enc({"chars": ids}).shape == (2, 8)


def test_fgcrossnet_reads_texts_through_the_image_encoder_itself():
    model = _char_grid_model()
    FGCrossNet().setup(model, 2, False)
    assert model.text_encoder.backbone is model.image_encoder
    # the final weights hold the network under both names, so a model built without the
    # recipe (evaluation) reads texts with the same weights
    state = model.state_dict()
    assert any(k.startswith("text_encoder.backbone.") for k in state)
    with pytest.raises(ConfigError, match="not built like the image encoder"):
        FGCrossNet().setup(_char_grid_model({"model": "mobilenetv3_small_075", "out_dim": 8}),
                           2, False)


def test_fgcrossnet_shapes_preset_trains_far_above_chance_on_raw_pairs(tmp_path):
    # colour classes without distractor objects: learnable from random weights in a few dozen
    # steps on CPU; one small timm network reads both media
    net = {"model": "mobilenetv3_small_050", "out_dim": 16}
    raw = {"preset": "fgcrossnet-shapes", "seed": 0,
           "dataset": {"name": "shapes", "params": {"num_pairs": 200, "num_classes": 4,
                                                    "label_scheme": "colour",
                                                    "distractor_prob": 0.0,
                                                    "split_sizes": [128, 24, 48],
                                                    "image_size": 32, "seed": 1}},
           "pipeline": {"text": {"encoder": {"name": "char-grid",
                                             "params": {"length": 32, "backbone": "timm",
                                                        "backbone_params": net}}},
                        "image": {"encoder": {"name": "timm", "params": net}}},
           "train": {"device": "cpu", "threads": 1,
                     "stages": {"fgcrossnet": {"epochs": 8, "batch_size": 16,
                                               "optimizer": {"name": "adam", "lr": 3e-3}}}},
           "evaluate": {"examples": 0}}
    metrics = train_and_evaluate(load_run_config(raw), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.25
    assert metrics["i2t"] > metrics["chance"] + 0.2 and metrics["t2i"] > metrics["chance"] + 0.2
    # built from the saved config without the recipe (as `daer evaluate` does), the text
    # encoder has its own copy of the network, loaded with the same weights: same scores
    from daer_core.training.report import write_evaluation
    from daer_core.training.run_loading import load_run

    loaded = load_run(tmp_path / "run")
    assert loaded.model.text_encoder.backbone is not loaded.model.image_encoder
    again = write_evaluation(loaded.model, loaded.preprocess, loaded.test, loaded.classes,
                             loaded.config, loaded.run_dir, device=torch.device("cpu"))
    assert again["avg"] == pytest.approx(metrics["avg"], abs=1e-6)


# -- through the trainer -------------------------------------------------------------------

def test_fgcrossnet_retrieves_far_above_chance_on_synthetic_features(tmp_path):
    root = write_features(tmp_path / "f.npz")
    metrics = train_and_evaluate(load_run_config(fgcrossnet_config(root)), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.4
    log = epochs_of(tmp_path / "run")
    assert {"train_cla", "train_center", "train_rank", "train_quad_anchor",
            "train_quad_pair", "train_loss"} <= set(log[0])
    assert log[-1]["train_cla"] < log[0]["train_cla"] / 5
    assert log[-1]["train_rank"] < log[0]["train_rank"]


def test_fgcrossnet_resumes_exactly(tmp_path, monkeypatch):
    root = write_features(tmp_path / "f.npz")

    def cfg():
        return load_run_config(fgcrossnet_config(root, epochs=3))

    straight = Trainer(cfg(), tmp_path / "straight")
    straight.train()

    calls = {"n": 0}
    real = Trainer._train_epoch

    def dying(self, stage, optimizers):
        calls["n"] += 1
        if calls["n"] == 3:  # after two epochs: momentum buffers and the centres
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
    for a, b in zip(straight.heads.parameters(), resumed.heads.parameters()):
        assert torch.equal(a, b)


# -- ranking on the softmax of the C-way output (the public code's ranking) ----------------

def test_class_softmax_relation_scores_a_hand_computed_case():
    from plugins.relation.class_softmax import ClassSoftmaxParams, make_class_softmax
    rel = make_class_softmax(ClassSoftmaxParams(num_classes=2), text_dim=2, image_dim=2)
    with torch.no_grad():
        rel.classifier.weight.copy_(torch.eye(2))
        rel.classifier.bias.zero_()
    # logits = the vectors themselves: softmax(ln 3, 0) = (3/4, 1/4), softmax(0, 0) = (1/2, 1/2)
    # softmax(0, ln 3) = (1/4, 3/4)
    import math
    text = torch.tensor([[math.log(3.0), 0.0]])
    image = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    # cos((3,1), (1,1)) = 4 / (sqrt 10 sqrt 2); cos((3,1), (1,3)) = 6 / 10; cos with itself = 1
    expected = torch.tensor([[4 / (10 ** 0.5 * 2 ** 0.5), 0.6, 1.0]])
    assert torch.allclose(rel.score(text, image), expected, atol=1e-6)
    # paired rows agree with the matrix's diagonal; emitting logits changes nothing (no squash)
    assert torch.allclose(rel(text.repeat(3, 1), image), expected[0], atol=1e-6)
    rel.emit_logits = True
    assert torch.allclose(rel.score(text, image), expected, atol=1e-6)


def test_class_softmax_relation_names_its_missing_class_count():
    from plugins.relation.class_softmax import ClassSoftmaxParams, make_class_softmax
    with pytest.raises(ConfigError, match="pipeline.relation.params.num_classes"):
        make_class_softmax(ClassSoftmaxParams(), text_dim=4, image_dim=4)


def _class_softmax_config(root: str, num_classes: int, **kw) -> dict:
    cfg = fgcrossnet_config(root, **kw)
    cfg["pipeline"]["relation"] = {"name": "class-softmax",
                                   "params": {"num_classes": num_classes}}
    return cfg


def test_fgcrossnet_trains_the_class_softmax_relation_and_ranks_through_it(tmp_path):
    root = write_features(tmp_path / "f.npz")  # 4 classes
    fresh = Trainer(load_run_config(_class_softmax_config(root, 4)), tmp_path / "fresh")
    assert "label" not in fresh.heads  # no classifier of the recipe's own
    metrics = train_and_evaluate(load_run_config(_class_softmax_config(root, 4)),
                                 tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.4
    # the run's checkpoint holds the classifier the recipe trained (not its seeded start)
    from daer_core.training import checkpoint
    tensors, _, _ = checkpoint.read_checkpoint(tmp_path / "run", "final")
    trained = tensors["model.relation.classifier.weight"]
    assert not torch.allclose(trained, fresh.model.relation.classifier.weight)


def test_fgcrossnet_rejects_a_class_softmax_relation_of_the_wrong_size(tmp_path):
    root = write_features(tmp_path / "f.npz")  # 4 classes
    with pytest.raises(ConfigError, match="num_classes = 3.*4 classes"):
        Trainer(load_run_config(_class_softmax_config(root, 3)), tmp_path / "run")


# -- the CLI -----------------------------------------------------------------------------------

def test_plugins_list_and_show_document_fgcrossnet(capsys):
    from daer_core.cli.main import main

    main(["plugins", "list", "--json"])
    listing = json.loads(capsys.readouterr().out)
    assert ("recipe", "fgcrossnet") in {(c["kind"], c["name"]) for c in listing["components"]}
    assert ("text_encoder", "char-grid") in {(c["kind"], c["name"])
                                              for c in listing["components"]}
    assert {"fgcrossnet", "fgcrossnet-shapes"} <= {p["name"] for p in listing["presets"]}
    main(["plugins", "show", "fgcrossnet", "--kind", "recipe"])
    shown = capsys.readouterr().out
    for line in ("center_weight: float  (default 0.001)", "rank_weight: float  (default 0.1)",
                 "margin1: float  (default 1.0)", "margin2: float  (default 0.5)",
                 "center_update: float  (default 1.0)", "shared_layers: int | None  (default null)"):
        assert line in shown
