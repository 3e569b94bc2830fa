"""The adversarial baselines as recipes (issue 12): ``acmr`` and ``cm-gans``.

Every loss term on small hand-computed cases, the gradient reversal layer, which parameters
each of the alternating steps changes, retrieval far above chance on synthetic features, and
exact resume through the shared trainer."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipe_toys import Identity, ToyModel, epochs_of  # noqa: F401
from daer_core.config import load_run_config
from daer_core.interfaces import TrainBatch
from daer_core.training.api import train_and_evaluate
from daer_core.training.trainer import Trainer
from plugins.recipes.acmr import (ACMR, ACMRParams, frobenius_norms, grl_lambda,
                                  modality_loss, reverse_gradient, triplet_loss)
from plugins.recipes.cm_gans import (CMGANs, CMGANsParams, gan_loss, linear_layers,
                                     reconstruction_loss)

from test_feature_training import write_features


def adversarial_config(root: str, recipe: str, stage: str, epochs: int = 4,
                       lr: float = 1e-3, **params) -> dict:
    """A ``recipe`` run on a synthetic features set: vector-mlp encoders, cosine relation."""
    enc = {"name": "vector-mlp", "params": {"hidden": [32], "out_dim": 16}}
    return {"preset": recipe, "seed": 0,
            "dataset": {"name": "features", "params": {"root": root}},
            "pipeline": {"text": {"encoder": enc}, "image": {"encoder": enc}},
            "train": {"device": "cpu", "threads": 1,
                      "recipe": {"name": recipe, "params": params},
                      "stages": {stage: {"epochs": epochs, "batch_size": 16,
                                         "optimizer": {"name": "adam", "lr": lr}}}},
            "evaluate": {"examples": 0}}



# -- gradient reversal ---------------------------------------------------------------------

def test_gradient_reversal_is_the_identity_forwards_and_flips_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -0.75]))


def test_gradient_reversal_flips_the_sign_of_the_gradient_into_the_projector():
    torch.manual_seed(0)
    projector, classifier = nn.Linear(5, 4), nn.Linear(4, 2)
    img, txt = torch.randn(6, 5), torch.randn(6, 5)

    def projector_grad(lam):
        projector.zero_grad()
        classifier.zero_grad()
        v, t = projector(img), projector(txt)
        if lam is not None:
            v, t = reverse_gradient(v, lam), reverse_gradient(t, lam)
        modality_loss(classifier, v, t).backward()
        return projector.weight.grad.clone(), classifier.weight.grad.clone()

    plain, plain_cls = projector_grad(None)
    reversed_, reversed_cls = projector_grad(0.7)
    assert plain.abs().sum() > 0
    assert torch.allclose(reversed_, -0.7 * plain, atol=1e-7)
    # the classifier itself is still trained to classify (its gradient is not reversed)
    assert torch.allclose(reversed_cls, plain_cls)


def test_the_reversal_factor_ramps_as_in_the_public_code():
    assert grl_lambda(0, 100, 1.0) == 0.0
    assert grl_lambda(50, 100, 1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_lambda(100, 100, 0.5) == pytest.approx(0.5 * (2 / (1 + math.exp(-10)) - 1))
    assert grl_lambda(1000, 100, 0.5) == grl_lambda(100, 100, 0.5)  # capped at p = 1
    assert grl_lambda(7, 0, 0.3) == 0.3                               # constant


# -- ACMR's loss terms on hand-computed cases ------------------------------------------------

def test_triplet_uses_the_pair_as_positive_and_the_hardest_other_class_item_as_negative():
    anchor = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    other = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # squared distances anchor -> other:
    #   a0: [1, 2, 9]   a1: [2, 1, 4]   a2: [0, 1, 10]
    # a0 (class 0): positive o0 = 1, negatives {o2} = 9 -> max(0, 0.5 + 1 - 9) = 0
    # a1 (class 0): positive o1 = 1, negatives {o2} = 4 -> 0
    # a2 (class 1): positive o2 = 10, negatives {o0, o1}, hardest 0 -> 0.5 + 10 - 0 = 10.5
    assert triplet_loss(anchor, other, labels, 0.5).item() == pytest.approx(10.5 / 3)
    # the same class everywhere: no negative, no loss
    same = torch.ones(3, 1)
    assert triplet_loss(anchor, other, same, 0.5).item() == 0.0


def test_modality_loss_is_the_cross_entropy_of_images_as_0_and_texts_as_1():
    clf = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        clf.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    image, text = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    # image logits (2, -2): -log softmax_0 = log(1 + e^-4); text logits (1, -1): log(1 + e^2)
    expected = (math.log1p(math.exp(-4)) + math.log1p(math.exp(2))) / 2
    assert modality_loss(clf, image, text).item() == pytest.approx(expected, rel=1e-6)


def test_frobenius_regulariser_sums_the_weight_norms():
    a, b = nn.Linear(2, 2), nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # norm 5
        b.weight.copy_(torch.tensor([[6.0, 8.0]]))              # norm 10
    assert frobenius_norms(nn.Sequential(a, nn.ReLU()), b).item() == pytest.approx(15.0)


def test_acmr_features_step_combines_its_terms_as_documented():
    params = ACMRParams(alpha=2.0, beta=3.0, margin=0.5, reg_weight=0.1, grl_weight=0.4,
                        grl_ramp_steps=0)
    recipe = ACMR(params)
    model = ToyModel(2)
    extras = nn.ModuleDict(recipe.setup(model, num_classes=2, multi_label=False))
    with torch.no_grad():
        extras["label"].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        extras["label"].bias.zero_()
    img = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    batch = TrainBatch(ids=["a", "b", "c"], text={"features": txt}, images=img, labels=labels)
    terms = recipe.losses("acmr", "features", model, extras, batch)
    # L_imd: the label classifier is the identity, so the logits are the embeddings
    ce = lambda z, y: -torch.log_softmax(z, 1)[torch.arange(3), y].mean()  # noqa: E731
    y = torch.tensor([0, 0, 1])
    assert terms["imd"].item() == pytest.approx((ce(img, y) + ce(txt, y)).item(), rel=1e-6)
    # L_imi: image anchors (10.5 / 3, above) plus text anchors, computed the same way:
    #   t0: [1, 2, 0]  t1: [2, 1, 1]  t2: [9, 4, 10]  (squared distances text -> image)
    #   t0 positive 1, negative i2 = 0 -> 1.5;  t1 positive 1, negative i2 = 1 -> 0.5
    #   t2 positive 10, hardest of {i0, i1} 4 -> 6.5
    assert terms["imi"].item() == pytest.approx(10.5 / 3 + 8.5 / 3, rel=1e-6)
    # L_reg: the two identity projectors, Frobenius norm sqrt(2) each
    assert terms["reg"].item() == pytest.approx(2 * math.sqrt(2), rel=1e-6)
    emb = 2.0 * terms["imi"] + 3.0 * terms["imd"] + 0.1 * terms["reg"]
    assert terms["emb"].item() == pytest.approx(emb.item(), rel=1e-6)
    assert terms["adv"].item() == pytest.approx(
        modality_loss(extras["modality"], img, txt).item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx((emb + terms["adv"]).item(), rel=1e-6)
    assert terms["lambda"].item() == pytest.approx(0.4)
    # the projector descends L_emb - lambda L_adv: its gradient is that of emb minus 0.4 adv
    terms["loss"].backward()
    through_grl = model.image_encoder.proj.weight.grad.clone()
    model.zero_grad()
    fresh = recipe.losses("acmr", "features", model, extras, batch)
    (fresh["emb"] - 0.4 * modality_loss(extras["modality"], model.encode_image(img),
                                        model.encode_text(batch.text))).backward()
    assert torch.allclose(through_grl, model.image_encoder.proj.weight.grad, atol=1e-5)


# -- through the trainer -------------------------------------------------------------------

def _snapshots(trainer: Trainer, monkeypatch) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Record every parameter (model and extra modules) at the start of every step."""
    seen: list[tuple[str, dict[str, torch.Tensor]]] = []
    real = trainer.recipe.losses

    def spy(stage, step, model, extras, batch):
        params = {f"model.{k}": v.detach().clone() for k, v in model.named_parameters()}
        params.update({f"heads.{k}": v.detach().clone() for k, v in extras.named_parameters()})
        seen.append((step, params))
        return real(stage, step, model, extras, batch)

    monkeypatch.setattr(trainer.recipe, "losses", spy)
    return seen


def changed_by_each_step(seen) -> dict[str, set[str]]:
    """Which parameters changed during each step (between its snapshot and the next)."""
    out: dict[str, set[str]] = {}
    for (step, before), (_, after) in zip(seen, seen[1:]):
        moved = {k for k in before if not torch.equal(before[k], after[k])}
        out.setdefault(step, set()).update(moved)
    return out


def test_acmr_steps_alternate_projector_then_modality_classifier(tmp_path, monkeypatch):
    root = write_features(tmp_path / "f.npz")
    trainer = Trainer(load_run_config(adversarial_config(root, "acmr", "acmr", epochs=1)),
                      tmp_path / "run")
    seen = _snapshots(trainer, monkeypatch)
    trainer.train()
    assert [s for s, _ in seen[:4]] == ["features", "modality", "features", "modality"]
    moved = changed_by_each_step(seen)
    projector = {k for k in seen[0][1] if k.startswith(("model.text_encoder",
                                                        "model.image_encoder"))}
    label = {k for k in seen[0][1] if k.startswith("heads.label")}
    modality = {k for k in seen[0][1] if k.startswith("heads.modality")}
    assert projector and label and modality
    # the features step moves every projector and label-classifier parameter, never D
    assert moved["features"] == projector | label
    # the modality step moves exactly the modality classifier
    assert moved["modality"] == modality


def test_acmr_retrieves_far_above_chance_on_synthetic_features(tmp_path):
    root = write_features(tmp_path / "f.npz")
    metrics = train_and_evaluate(
        load_run_config(adversarial_config(root, "acmr", "acmr", epochs=5)), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.4
    log = epochs_of(tmp_path / "run")
    assert {"train_features_imi", "train_features_imd", "train_features_adv",
            "train_features_lambda", "train_modality_adv"} <= set(log[0])
    # lambda ramps up across epochs (the counter in the extra modules advances)
    assert log[0]["train_features_lambda"] < log[-1]["train_features_lambda"]


@pytest.mark.parametrize("recipe", ["acmr", "cm-gans"])
def test_adversarial_recipes_resume_exactly(tmp_path, monkeypatch, recipe):
    root = write_features(tmp_path / "f.npz")

    def cfg():
        raw = adversarial_config(root, recipe, recipe, epochs=3)
        for side in ("text", "image"):  # cm-gans shares the last two layers: needs two
            raw["pipeline"][side]["encoder"]["params"]["hidden"] = [32, 32]
        return load_run_config(raw)

    straight = Trainer(cfg(), tmp_path / "straight")
    straight.train()

    calls = {"n": 0}
    real = Trainer._train_epoch

    def dying(self, stage, optimizers):
        calls["n"] += 1
        if calls["n"] == 3:  # after two epochs: Adam moments (and ACMR's lambda counter)
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


# -- CM-GANs ---------------------------------------------------------------------------------

def test_gan_loss_is_the_binary_cross_entropy_against_real_or_fake():
    logits = torch.tensor([[0.0], [2.0]])
    real = (math.log(2) + math.log1p(math.exp(-2))) / 2
    fake = (math.log(2) + math.log1p(math.exp(2))) / 2
    assert gan_loss(logits, True).item() == pytest.approx(real, rel=1e-6)
    assert gan_loss(logits, False).item() == pytest.approx(fake, rel=1e-6)


def test_reconstruction_loss_is_the_mean_squared_error():
    recon = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert reconstruction_loss(recon, target).item() == pytest.approx((4 + 9) / 4)


def _cm_gans_setup(**params):
    from plugins.vectors.mlp import VectorMLPParams, VectorImageEncoder, VectorTextEncoder

    torch.manual_seed(0)
    enc = VectorMLPParams(hidden=[4, 3], out_dim=2)
    model = ToyModel(2)
    model.text_encoder, model.image_encoder = VectorTextEncoder(enc), VectorImageEncoder(enc)
    model.encode_image(torch.randn(4, 5))        # input widths: image 5, text 3
    model.encode_text({"features": torch.randn(4, 3)})
    recipe = CMGANs(CMGANsParams(**params))
    extras = nn.ModuleDict(recipe.setup(model, num_classes=2, multi_label=False))
    return recipe, model, extras


def test_cm_gans_shares_the_upper_layers_and_ties_the_decoders_last_layer():
    recipe, model, extras = _cm_gans_setup(shared_layers=2)
    (tnet, tidx), (inet, iidx) = linear_layers(model.text_encoder), \
        linear_layers(model.image_encoder)
    assert inet[iidx[-1]] is tnet[tidx[-1]] and inet[iidx[-2]] is tnet[tidx[-2]]
    assert inet[iidx[0]] is not tnet[tidx[0]]       # the first layer reads its own width
    # the decoder's last layer is the transposed first encoder weight: s -> (B, 5)
    s = torch.randn(3, 2)
    recon = extras["decode_image"](s, model.image_encoder)
    hidden = extras["decode_image"].layers(s)
    assert torch.allclose(recon, hidden @ inet[iidx[0]].weight)
    assert recon.shape == (3, 5)
    with pytest.raises(ValueError, match="shared_layers"):
        _cm_gans_setup(shared_layers=3)


def test_cm_gans_terms_match_their_definitions():
    recipe, model, extras = _cm_gans_setup(label_weight=2.0, recon_weight=3.0, adv_weight=0.5)
    model.train()
    img, txt = torch.randn(4, 5), torch.randn(4, 3)
    labels = torch.eye(2)[[0, 1, 0, 1]]
    batch = TrainBatch(ids=list("abcd"), text={"features": txt}, images=img, labels=labels)
    g = recipe.losses("cm-gans", "generator", model, extras, batch)
    s_i, s_t = model.encode_image(img), model.encode_text(batch.text)
    # the standardised inputs: batch statistics (biased variance), as the batch norm reads them
    x_i = (img - img.mean(0)) / torch.sqrt(img.var(0, unbiased=False) + 1e-5)
    x_t = (txt - txt.mean(0)) / torch.sqrt(txt.var(0, unbiased=False) + 1e-5)
    r_i = extras["decode_image"](s_i, model.image_encoder)
    r_t = extras["decode_text"](s_t, model.text_encoder)
    y = torch.tensor([0, 1, 0, 1])
    label = F.cross_entropy(extras["label"](s_i), y) + F.cross_entropy(extras["label"](s_t), y)
    recon = ((r_i - x_i) ** 2).mean() + ((r_t - x_t) ** 2).mean()
    bce = F.binary_cross_entropy_with_logits
    di, dt = extras["inter"](s_i), extras["inter"](s_t)
    inter = bce(di, torch.zeros_like(di)) + bce(dt, torch.ones_like(dt))
    first_i = linear_layers(model.image_encoder)[0][linear_layers(model.image_encoder)[1][0]]
    first_t = linear_layers(model.text_encoder)[0][linear_layers(model.text_encoder)[1][0]]
    fi = extras["intra_image"].head(torch.relu(r_i @ first_i.weight.T + first_i.bias))
    ft = extras["intra_text"].head(torch.relu(r_t @ first_t.weight.T + first_t.bias))
    intra = bce(fi, torch.ones_like(fi)) + bce(ft, torch.ones_like(ft))
    for name, value in (("label", label), ("recon", recon), ("inter", inter),
                        ("intra", intra)):
        assert g[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert g["loss"].item() == pytest.approx(
        (2.0 * label + 3.0 * recon + 0.5 * (inter + intra)).item(), rel=1e-5)
    # the discriminators: images real for D_inter, originals real for D_I / D_T
    d = recipe.losses("cm-gans", "discriminator", model, extras, batch)
    ri = extras["intra_image"].head(torch.relu(x_i @ first_i.weight.T + first_i.bias))
    rt = extras["intra_text"].head(torch.relu(x_t @ first_t.weight.T + first_t.bias))
    d_inter = bce(di, torch.ones_like(di)) + bce(dt, torch.zeros_like(dt))
    d_intra = (bce(ri, torch.ones_like(ri)) + bce(fi, torch.zeros_like(fi))
               + bce(rt, torch.ones_like(rt)) + bce(ft, torch.zeros_like(ft)))
    assert d["inter"].item() == pytest.approx(d_inter.item(), rel=1e-5)
    assert d["intra"].item() == pytest.approx(d_intra.item(), rel=1e-5)
    assert d["loss"].item() == pytest.approx((d_inter + d_intra).item(), rel=1e-5)


def test_cm_gans_steps_alternate_generators_then_discriminators(tmp_path, monkeypatch):
    root = write_features(tmp_path / "f.npz")
    cfg = adversarial_config(root, "cm-gans", "cm-gans", epochs=1)
    for side in ("text", "image"):
        cfg["pipeline"][side]["encoder"]["params"]["hidden"] = [32, 32]
    trainer = Trainer(load_run_config(cfg), tmp_path / "run")
    seen = _snapshots(trainer, monkeypatch)
    trainer.train()
    assert [s for s, _ in seen[:4]] == ["generator", "discriminator"] * 2
    moved = changed_by_each_step(seen)
    names = set(seen[0][1])
    generators = {k for k in names if k.startswith(
        ("model.text_encoder", "model.image_encoder", "heads.label", "heads.decode_"))}
    discriminators = {k for k in names if k.startswith(
        ("heads.inter", "heads.intra_"))}
    assert generators and discriminators and generators | discriminators == names
    assert moved["generator"] == generators
    assert moved["discriminator"] == discriminators
    # the shared upper layers stayed one: equal weights in both encoders after training
    t, i = trainer.model.text_encoder.net, trainer.model.image_encoder.net
    assert torch.equal(t[-1].weight, i[-1].weight) and t[-1] is i[-1]


def test_cm_gans_retrieves_far_above_chance_on_synthetic_features(tmp_path):
    root = write_features(tmp_path / "f.npz")
    cfg = adversarial_config(root, "cm-gans", "cm-gans", epochs=5, lr=5e-3)
    for side in ("text", "image"):
        cfg["pipeline"][side]["encoder"]["params"]["hidden"] = [32, 32]
    metrics = train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.4
    log = epochs_of(tmp_path / "run")
    assert {"train_generator_label", "train_generator_recon", "train_generator_inter",
            "train_generator_intra", "train_discriminator_inter",
            "train_discriminator_intra"} <= set(log[0])
    assert log[-1]["train_generator_recon"] < log[0]["train_generator_recon"]
