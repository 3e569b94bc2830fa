"""A small trained `shapes` run and a gallery index over it, shared by the search tests.

The run is the `daer` preset at toy sizes (32 px, 60 pairs, one epoch per stage). Its image
encoder is timm's ``convnext_atto`` (layer norm, random init) rather than MobileNetV3: after a
handful of steps MobileNetV3's batch-norm statistics make every image embedding identical in
eval mode, and a gallery whose scores all tie cannot tell a right ranking from a wrong one.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("faiss", reason="the search extra is not installed: pip install -e '.[search]'")

from search_cli import tiny_search_pipeline  # noqa: E402
from search_gallery import GALLERY, GALLERY_SET  # noqa: E402


def search_run_config() -> dict:
    stage = {"epochs": 1, "batch_size": 8, "optimizer": {"name": "sgd", "lr": 0.05,
                                                         "momentum": 0.9}}
    return {
        "preset": "daer",
        "name": "search-tiny",
        "seed": 5,
        "dataset": {"name": "shapes", "params": {"num_pairs": 60, "num_classes": 4,
                                                 "image_size": 32, "seed": 2}},
        "pipeline": tiny_search_pipeline(),
        "train": {"device": "cpu", "threads": 1,
                  "stages": {"text": copy.deepcopy(stage), "image": copy.deepcopy(stage),
                             "relation": copy.deepcopy(stage)}},
        "evaluate": {"examples": 1, "block_size": 16},
    }


@pytest.fixture(scope="session")
def search_run(tmp_path_factory) -> Path:
    """A finished run directory (trained once per test session)."""
    from daer_core.training.api import train_and_evaluate
    out = tmp_path_factory.mktemp("search-run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_and_evaluate(search_run_config(), out)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def loaded_run(search_run):
    from daer_core.training.run_loading import load_run
    return load_run(search_run)


@pytest.fixture(scope="session")
def built_index(search_run, loaded_run, tmp_path_factory) -> Path:
    """An index over 80 freshly drawn shapes pairs (shards of 16, flat FAISS)."""
    from daer_core.search import index_gallery, resolve_gallery
    out = tmp_path_factory.mktemp("search-index") / "index"
    source = resolve_gallery(GALLERY, loaded_run.config, params=GALLERY_SET)
    index_gallery(loaded_run, source, out, shard_size=16, show_progress=False)
    return out


@pytest.fixture
def index_copy(built_index, tmp_path) -> Path:
    """A private copy of the built index, for tests that add to it or damage it."""
    dst = tmp_path / "index"
    shutil.copytree(built_index, dst)
    return dst
