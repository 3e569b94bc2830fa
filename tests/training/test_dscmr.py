"""DSCMR (Zhen et al., CVPR 2019) as a training recipe: each loss term on hand-computed cases,
the shared last layer, and a run on synthetic features far above chance."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.interfaces import TrainBatch
from daer_core.training.api import resume_run, train_and_evaluate
from daer_core.training.trainer import Trainer
from plugins.recipes.dscmr import (DSCMR, DSCMRParams, discrimination_loss, invariance_loss, j1,
                                   pair_nll, share_matrix)

from test_feature_training import write_features


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_j1_is_the_mean_row_error_norm_of_both_modalities():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image_pred = torch.tensor([[1.0, 0.0], [0.0, 0.0]])   # row errors 0 and 1
    text_pred = torch.tensor([[4.0, 0.0], [0.0, 1.0]])    # row errors 3 and 0
    assert j1(image_pred, text_pred, labels).item() == pytest.approx(0.5 + 1.5)
    assert j1(labels, labels, labels).item() == 0.0


def test_share_matrix_marks_pairs_with_a_common_class():
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert share_matrix(labels, labels).tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]


def test_pair_nll_uses_half_the_cosine():
    a = torch.tensor([[2.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 5.0]])            # cosines 1 and 0
    s = torch.tensor([[1.0, 0.0]])
    expected = ((softplus(0.5) - 0.5) + softplus(0.0)) / 2
    assert pair_nll(a, b, s).item() == pytest.approx(expected, rel=1e-6)
    # a dissimilar pair (S = 0) with a positive cosine costs more than with a negative one
    far = pair_nll(a, -a, torch.zeros(1, 1))
    near = pair_nll(a, a, torch.zeros(1, 1))
    assert far.item() == pytest.approx(softplus(-0.5)) and near.item() > far.item()


def test_j2_sums_image_text_image_image_and_text_text_terms():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # image-image: Gamma = I / 2 and S = I
    ii = (2 * (softplus(0.5) - 0.5) + 2 * softplus(0.0)) / 4
    # text-text: all cosines 1, Gamma = 1/2 everywhere; S = I
    tt = (2 * (softplus(0.5) - 0.5) + 2 * softplus(0.5)) / 4
    # image-text: cos(i0,t0)=1 (S 1), cos(i0,t1)=1 (S 0), cos(i1,t0)=0 (S 0), cos(i1,t1)=0 (S 1)
    it = ((softplus(0.5) - 0.5) + softplus(0.5) + softplus(0.0) + softplus(0.0)) / 4
    got = discrimination_loss(image, text, labels).item()
    assert got == pytest.approx(ii + tt + it, rel=1e-6)


def test_j3_is_the_mean_distance_of_paired_features():
    image = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    text = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert invariance_loss(image, text).item() == pytest.approx(2.5)


class Fixed(nn.Module):
    """An encoder that returns given features, whatever its inputs."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = out
        self.out_dim = out.shape[1]

    def forward(self, _inputs):
        return self.out


def test_the_total_is_j1_plus_alpha_j2_plus_beta_j3():
    image = torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]])
    text = torch.tensor([[0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    model = SimpleNamespace(text_encoder=Fixed(text), image_encoder=Fixed(image),
                            encode_text=lambda x: text, encode_image=lambda x: image)
    recipe = DSCMR(DSCMRParams(alpha=0.3, beta=0.7, share_last_layer=False))
    extras = nn.ModuleDict(recipe.setup(model, num_classes=2, multi_label=False))
    terms = recipe.losses("joint", "main", model, extras,
                          TrainBatch(ids=["a", "b", "c"], text={}, images=image, labels=labels))
    p = extras["classifier"]
    assert p.bias is None
    expected = (j1(p(image), p(text), labels) + 0.3 * discrimination_loss(image, text, labels)
                + 0.7 * invariance_loss(image, text))
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["j3_invariance"].item() == pytest.approx(invariance_loss(image, text).item())


def dscmr_config(root: str, **stage) -> dict:
    joint = {"epochs": 15, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.003},
             **stage}
    encoder = {"name": "vector-mlp", "params": {"hidden": [32], "out_dim": 16}}
    return {"preset": "dscmr", "seed": 0,
            "dataset": {"name": "features", "params": {"root": root}},
            "pipeline": {"text": {"encoder": encoder}, "image": {"encoder": encoder}},
            "train": {"device": "cpu", "threads": 1, "stages": {"joint": joint}},
            "evaluate": {"examples": 0}}


def test_the_last_layers_are_shared_and_mismatches_are_config_errors(tmp_path):
    root = write_features(tmp_path / "feats.npz")
    trainer = Trainer(load_run_config(dscmr_config(root)), tmp_path / "run")
    text_last = trainer.model.text_encoder.net[-1]
    assert trainer.model.image_encoder.net[-1] is text_last
    assert trainer.model.image_encoder.net[0] is not trainer.model.text_encoder.net[0]
    assert list(trainer.heads) == ["classifier"]

    cfg = dscmr_config(root)
    cfg["pipeline"]["image"]["encoder"] = {"name": "vector-mlp",
                                           "params": {"hidden": [24], "out_dim": 16}}
    with pytest.raises(ConfigError, match="share_last_layer"):
        Trainer(load_run_config(cfg), tmp_path / "run2")
    cfg["train"]["recipe"] = {"name": "dscmr", "params": {"share_last_layer": False}}
    separate = Trainer(load_run_config(cfg), tmp_path / "run3")
    assert separate.model.image_encoder.net[-1] is not separate.model.text_encoder.net[-1]

    cfg["pipeline"]["image"]["encoder"] = {"name": "vector-mlp",
                                           "params": {"hidden": [32], "out_dim": 8}}
    cfg["pipeline"]["relation"] = {"name": "mlp", "params": {"in_dim": None, "hidden": [8]}}
    with pytest.raises(ConfigError, match="same out_dim"):
        Trainer(load_run_config(cfg), tmp_path / "run4")


def test_dscmr_trains_far_above_chance_and_resumes(tmp_path):
    root = write_features(tmp_path / "feats.npz")
    metrics = train_and_evaluate(load_run_config(dscmr_config(root)), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.3
    # the shared layer survives the final weights: a fresh process state evaluates the same
    again = resume_run(tmp_path / "run")
    assert again["avg"] == pytest.approx(metrics["avg"])
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert "train_j2_discrimination" in log and "train_j1_label" in log


def test_the_table1_config_runs_dscmr_as_a_recipe_cell_with_its_validated_settings():
    from pathlib import Path

    from daer_core.benchmark import load_benchmark_config
    from daer_core.benchmark.cells import daer_run_config

    path = Path(__file__).resolve().parents[2] / "configs/benchmarks/table1-wikipedia-features.yaml"
    config, _ = load_benchmark_config(path)
    dataset = config.datasets["wikipedia"]
    run = load_run_config(daer_run_config(config.methods["DSCMR"], dataset, seed=3))
    assert run.train.recipe.name == "dscmr" and run.train.recipe.params["alpha"] == 1.0
    assert run.pipeline.relation.name == "cosine" and run.seed == 3
    assert run.dataset.params["val_fraction"] == 0.1
    features = load_run_config(daer_run_config(config.methods["DAER-features"], dataset, 0))
    assert features.train.recipe.name == "daer-three-stage"
