"""A tiny but complete run: the `daer` preset on a few built-in `shapes` pairs."""
from __future__ import annotations

import copy

import pytest


def make_tiny_config(**train_overrides) -> dict:
    """The paper's pipeline at toy sizes: 32 px images, a few pairs, two epochs per stage."""
    # no warmup: a toy stage takes a few steps, and the preset's 30-step image warmup would
    # keep it at a fraction of its rate (tests/training/test_warmup.py tests the warmup)
    stage = {"epochs": 2, "batch_size": 8, "warmup_steps": 0,
             "optimizer": {"name": "sgd", "lr": 0.01}}
    cfg = {
        "preset": "daer",
        "name": "tiny",
        "seed": 3,
        "dataset": {"name": "shapes", "params": {"num_pairs": 40, "num_classes": 4,
                                                 "image_size": 32, "seed": 1}},
        "pipeline": {"text": {"encoder": {"name": "word2vec-lstm",
                                          "params": {"vector_size": 16, "hidden_size": 16,
                                                     "out_dim": 16}},
                              "attention": {"name": "dual-region",
                                            "params": {"hidden": [8, 8, 8]}}},
                     "image": {"encoder": {"name": "mobilenetv3-large",
                                           "params": {"out_dim": 16}}},
                     "relation": {"name": "mlp", "params": {"in_dim": 32, "hidden": [16, 8]}}},
        "train": {"device": "cpu", "threads": 1,
                  "stages": {"text": copy.deepcopy(stage), "image": copy.deepcopy(stage),
                             "relation": copy.deepcopy(stage)}},
        "evaluate": {"examples": 1, "block_size": 5},
    }
    for dotted, value in train_overrides.items():
        node = cfg
        *path, last = dotted.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg



@pytest.fixture
def tiny_config():
    """``tiny_config(**overrides)`` -> a fresh raw config dict (``a__b=v`` sets ``a.b``)."""
    return make_tiny_config
