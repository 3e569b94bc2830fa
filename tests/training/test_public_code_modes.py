"""The baselines' public-code modes, on hand-computed cases (docs/baselines.md)."""
from __future__ import annotations

import pytest
import torch

from daer_core.config import load_run_config
from plugins.recipes.acmr import triplet_loss
from plugins.relation.euclidean import EuclideanRelation


def _case():
    """Two image anchors, two texts; labels 0 and 1, so each anchor's negative is the other
    pair's text. Squared distances: d(v0,t0)=1, d(v0,t1)=2, d(v1,t1)=0.25, d(v1,t0)=0.25."""
    v = torch.tensor([[0.0, 0.0], [1.0, 0.5]])
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([[1, 0], [0, 1]])
    return v, t, labels


def test_acmr_per_anchor_triplet_by_hand():
    v, t, labels = _case()
    # anchor 0: [0.1 + 1 - 2]_+ = 0; anchor 1: [0.1 + 0.25 - 0.25]_+ = 0.1; mean 0.05
    assert float(triplet_loss(v, t, labels, 0.1)) == pytest.approx(0.05)
    # x5 on the positive: [0.1 + 5 - 2]_+ = 3.1 and [0.1 + 1.25 - 0.25]_+ = 1.1; mean 2.1
    assert float(triplet_loss(v, t, labels, 0.1, positive_weight=5.0)) == pytest.approx(2.1)


def test_acmr_public_code_triplet_is_one_hinge_on_halved_batch_sums():
    v, t, labels = _case()
    # [0.1 + 5/2 (1 + 0.25) - 1/2 (2 + 0.25)]_+ = 0.1 + 3.125 - 1.125 = 2.1
    got = triplet_loss(v, t, labels, 0.1, positive_weight=5.0, form="batch-sum")
    assert float(got) == pytest.approx(2.1)
    # far negatives: the single hinge is 0 even where one anchor alone would violate it
    far = torch.tensor([[10.0, 0.0], [1.0, 0.5]])
    per_anchor = triplet_loss(far, t, labels, 0.1, form="per-anchor")
    assert float(per_anchor) > 0
    assert float(triplet_loss(far, t, labels, 0.1, form="batch-sum")) == 0.0


def test_euclidean_relation_ranks_by_distance_by_hand():
    rel = EuclideanRelation(text_dim=2, image_dim=2)
    text = torch.tensor([[0.0, 0.0]])
    images = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])      # distances 5, 1, 2
    assert rel.score(text, images)[0].tolist() == pytest.approx([1 / 6, 1 / 2, 1 / 3])
    rel.emit_logits = True
    assert rel.score(text, images)[0].tolist() == pytest.approx([-5.0, -1.0, -2.0])
    assert rel(text.expand(3, 2), images).tolist() == pytest.approx([-5.0, -1.0, -2.0])


def test_the_acmr_public_preset_says_what_runs():
    cfg = load_run_config(None, preset="acmr-public", dataset="features",
                          overrides=["dataset.params.root=/nowhere"])
    assert cfg.pipeline.relation.name == "euclidean"
    params = cfg.train.recipe.params
    assert (params["triplet"], params["positive_weight"], params["alpha"], params["beta"]) == (
        "batch-sum", 5.0, 1.0, 100.0)


def _quadruplet_case():
    """Four items on a line, classes 0, 0, 1, 2 at 0, 1, 3, 7; margins 3 and 6.

    Valid quadruplets (i, j, k, l): (0,1,2,3) (0,1,3,2) (1,0,2,3) (1,0,3,2), with
    d_ij = 1 and first / second terms 1+3, -3+3, 2+3, -2+3."""
    return torch.tensor([[0.0], [1.0], [3.0], [7.0]]), torch.tensor([0, 0, 1, 2])


def test_fgcrossnet_public_code_sums_the_two_terms_before_its_hinge():
    from plugins.recipes.fgcrossnet import quadruplet_terms, summed_quadruplet_loss
    x, classes = _quadruplet_case()
    # summed: 4, 0 (not counted), 5, 1 -> 10 over 3 positive quadruplets
    assert float(summed_quadruplet_loss(x, classes, 3.0, 6.0)) == pytest.approx(10 / 3)
    # each hinge on its own: first (1 + 2) / 2, second 3 over all four -> 1.5 + 3
    first, second = quadruplet_terms(x, classes, 3.0, 6.0)
    assert float(first + second) == pytest.approx(4.5)


def test_fgcrossnet_summed_form_matches_plain_enumeration():
    from itertools import product

    from plugins.recipes.fgcrossnet import euclidean, summed_quadruplet_loss
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    classes = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0, 1])
    d = euclidean(x)
    values = []
    for i, j, k, l in product(range(9), repeat=4):
        yi, yj, yk, yl = (int(classes[a]) for a in (i, j, k, l))
        if i != j and yi == yj and yk != yi and yl != yi and yk != yl:
            v = float(d[i, j] - d[i, k] + 1.0 + d[i, j] - d[k, l] + 0.5)
            if v > 0:
                values.append(v)
    got = summed_quadruplet_loss(x, classes, 1.0, 0.5)
    assert float(got) == pytest.approx(sum(values) / len(values))
    x.requires_grad_(True)
    summed_quadruplet_loss(x, classes, 1.0, 0.5).backward()
    assert torch.isfinite(x.grad).all()


def test_cm_gans_own_input_discriminator_reads_through_its_own_layer():
    """intra_input: own — the intra-modality discriminator's first layer is its own (sized
    by the data), not the generator's first layer: by hand on one vector."""
    from torch import nn

    from plugins.recipes.cm_gans import IntraDiscriminator, first_linear
    from plugins.vectors.mlp import VectorImageEncoder, VectorMLPParams
    torch.manual_seed(0)
    encoder = VectorImageEncoder(VectorMLPParams(hidden=[4, 3], out_dim=2))
    encoder(torch.randn(2, 5))                       # input width 5
    disc = IntraDiscriminator(4, own=True)
    x = torch.randn(3, 5)
    out = disc(x, encoder)
    layer = disc.input
    assert isinstance(layer, nn.Linear) and layer.weight.shape == (4, 5)
    assert layer.weight is not first_linear(encoder).weight
    assert torch.allclose(out, disc.head(torch.relu(x @ layer.weight.T + layer.bias)))
    # its own layer is a discriminator parameter: the generator's first layer gets no gradient
    out.sum().backward()
    assert first_linear(encoder).weight.grad is None and layer.weight.grad is not None
    shared = IntraDiscriminator(4)                   # the default reads the generator's layer
    assert shared.input is None


def test_cm_gans_own_input_trains_through_the_trainer_and_resumes(tmp_path, monkeypatch):
    """The trainer sizes a recipe's lazy extra modules before optimizers and checkpoints see
    them, and a resumed run loads them back."""
    from test_adversarial_recipes import adversarial_config
    from test_feature_training import write_features

    from daer_core.training import checkpoint as ck
    from daer_core.training.api import resume_run, train_and_evaluate
    from run_faults import kill_at_epoch_call
    root = write_features(tmp_path / "f.npz")
    cfg = adversarial_config(root, "cm-gans", "cm-gans", epochs=2)
    cfg["train"]["recipe"]["params"] = {"intra_input": "own"}
    for side in ("text", "image"):
        cfg["pipeline"][side]["encoder"]["params"]["hidden"] = [32, 32]
    restore = kill_at_epoch_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    # the checkpoint after epoch 1 holds the discriminators' own input layers, sized by data
    tensors, _, _ = ck.read_checkpoint(tmp_path / "run", ck.latest_tag(tmp_path / "run"))
    assert tensors["heads.intra_image.input.weight"].shape[0] == 32
    assert tensors["heads.intra_text.input.weight"].shape[0] == 32
    restore()
    metrics = resume_run(tmp_path / "run")
    assert 0.0 <= metrics["avg"] <= 1.0


def test_the_fgcrossnet_public_preset_says_what_runs():
    cfg = load_run_config(None, preset="fgcrossnet-public", dataset="features",
                          overrides=["dataset.params.root=/nowhere"])
    stage = cfg.train.stages.model_extra["fgcrossnet"]
    assert cfg.train.recipe.params["hinge"] == "sum"
    assert (stage.lr_decay_every, stage.lr_decay_factor) == (3, 0.5)
    assert (stage.optimizer.name, stage.optimizer.lr) == ("sgd", 1e-3)   # the public code's
