"""Every method can run on published features: a `features` dataset trains the DAER relation
side through the same trainer with feature-level encoders (the `daer-features` preset)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.training.api import resume_run, train_and_evaluate
from daer_core.training.trainer import Trainer


def write_features(path, classes: int = 4, per_class: int = 30, seed: int = 0) -> str:
    """Image and text features of different widths that share a class structure."""
    rng = np.random.default_rng(seed)
    parts = {}
    for split, n in (("train", per_class), ("val", per_class // 3), ("test", per_class // 3)):
        labels = np.repeat(np.arange(classes), n)
        img_centres = rng.normal(size=(classes, 16)) * 3
        txt_centres = rng.normal(size=(classes, 6)) * 3
        parts[f"{split}_img"] = img_centres[labels] + rng.normal(size=(len(labels), 16))
        parts[f"{split}_txt"] = txt_centres[labels] + rng.normal(size=(len(labels), 6))
        parts[f"{split}_lab"] = labels
    # the centres differ per split above only in noise draws: reuse train's for all splits
    for split in ("val", "test"):
        labels = parts[f"{split}_lab"]
        parts[f"{split}_img"] = parts["train_img"][labels * per_class] + rng.normal(
            size=(len(labels), 16))
        parts[f"{split}_txt"] = parts["train_txt"][labels * per_class] + rng.normal(
            size=(len(labels), 6))
    np.savez(path, **parts)
    return str(path)


def features_config(root: str, **stages) -> dict:
    stage = {"epochs": 4, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 0.05}}
    return {"preset": "daer-features", "seed": 0,
            "dataset": {"name": "features", "params": {"root": root}},
            "pipeline": {"text": {"encoder": {"name": "vector-mlp",
                                              "params": {"hidden": [32], "out_dim": 16}}},
                         "image": {"encoder": {"name": "vector-mlp",
                                               "params": {"hidden": [32], "out_dim": 16}}},
                         "relation": {"name": "mlp",
                                      "params": {"in_dim": None, "hidden": [32, 16]}}},
            "train": {"device": "cpu", "threads": 1,
                      "stages": {s: {**stage, **stages} for s in ("text", "image", "relation")}},
            "evaluate": {"examples": 2}}


def test_daer_features_trains_far_above_chance_and_resumes(tmp_path):
    root = write_features(tmp_path / "feats.npz")
    metrics = train_and_evaluate(load_run_config(features_config(root)), tmp_path / "run")
    assert metrics["avg"] > metrics["chance"] + 0.3
    assert not (tmp_path / "run" / "examples.png").exists()  # vectors have no picture
    # the final weights (lazily sized layers included) evaluate from a fresh process state
    again = resume_run(tmp_path / "run")
    assert again["avg"] == pytest.approx(metrics["avg"])


def test_raw_encoders_on_a_feature_dataset_are_a_config_error_naming_the_key(tmp_path):
    root = write_features(tmp_path / "feats.npz")
    cfg = features_config(root)
    cfg["preset"] = "daer"
    del cfg["pipeline"]["text"], cfg["pipeline"]["image"]
    with pytest.raises(ConfigError, match="pipeline.text.encoder: 'word2vec-lstm' reads raw"):
        Trainer(load_run_config(cfg), tmp_path / "run")
