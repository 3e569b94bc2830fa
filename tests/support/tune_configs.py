"""A tiny run config with a small search space, for the ``daer tune`` tests."""
from __future__ import annotations

import copy

#: the `daer` preset at toy sizes (as tests/training's tiny config), one epoch per stage
_STAGE = {"epochs": 1, "batch_size": 8, "warmup_steps": 0,
          "optimizer": {"name": "sgd", "lr": 0.01}}
TINY_TUNE = {
    "preset": "daer",
    "name": "tiny-study",
    "seed": 3,
    "dataset": {"name": "shapes", "params": {"num_pairs": 40, "num_classes": 4,
                                             "image_size": 32, "seed": 1}},
    "pipeline": {"text": {"encoder": {"name": "word2vec-lstm",
                                      "params": {"vector_size": 16, "hidden_size": 16,
                                                 "out_dim": 16}},
                          "attention": {"name": "dual-region", "params": {"hidden": [8, 8, 8]}}},
                 "image": {"encoder": {"name": "mobilenetv3-large", "params": {"out_dim": 16}}},
                 "relation": {"name": "mlp", "params": {"in_dim": 32, "hidden": [16, 8]}}},
    "train": {"device": "cpu", "threads": 1, "num_workers": 0,
              "stages": {"text": dict(_STAGE), "image": dict(_STAGE),
                         "relation": {**_STAGE, "epochs": 2}}},
    "evaluate": {"examples": 0, "block_size": 8},
    # replaces the preset's space (its epoch ranges would make the tests slow)
    "tune": {"space": {"train.stages.text.optimizer.lr": None,
                       "train.stages.image.optimizer.lr": None,
                       "train.stages.image.epochs": None,
                       "train.stages.relation.epochs": None,
                       "pipeline.enhancement.params.k": {"low": 0.4, "high": 1.0},
                       "train.stages.relation.optimizer.lr": {"low": 1.0e-3, "high": 0.1,
                                                              "log": True}},
             "startup_trials": 2},
}


def tiny_tune_config() -> dict:
    return copy.deepcopy(TINY_TUNE)
