"""Search on a run that re-ranks its own cosine first stage, over images with several captions:
`daer search` ranks each image once, in the order the run was evaluated with, and `daer index`
keeps that first stage, lists each image once and re-scores `rerank_k` candidates by default."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from search_cli import run_cli, tiny_search_pipeline

RERANK_K = 3


def rerank_run_config() -> dict:
    stage = {"epochs": 1, "batch_size": 8, "warmup_steps": 0,
             "optimizer": {"name": "adam", "lr": 1e-3}}
    return {
        "preset": "daer-rerank-shapes",
        "name": "rerank-tiny",
        "seed": 5,
        "dataset": {"name": "shapes", "params": {"num_pairs": 30, "num_classes": 4,
                                                 "captions_per_image": 3, "image_size": 32,
                                                 "seed": 2}},
        "pipeline": tiny_search_pipeline(),
        "train": {"device": "cpu", "threads": 1,
                  "stages": {"contrastive": dict(stage), "relation": dict(stage)}},
        "evaluate": {"examples": 1, "block_size": 16, "rerank_k": RERANK_K},
    }


@pytest.fixture(scope="module")
def rerank_run(tmp_path_factory) -> Path:
    from daer_core.training.api import train_and_evaluate
    out = tmp_path_factory.mktemp("rerank-run") / "run"
    train_and_evaluate(rerank_run_config(), out)
    return out


def image_of(pair_id: str) -> str:
    return pair_id.rsplit("-", 1)[0]  # shapes-00012-2 -> shapes-00012


def test_search_ranks_each_image_once_as_evaluated(rerank_run, capsys):
    from daer_core.evaluation.protocol import cosine_scores, distinct_images, rerank
    from daer_core.evaluation.retrieval import embed_records
    from daer_core.training.run_loading import load_run

    query = "a large red circle left of a small blue square"
    code, out, err = run_cli(capsys, "search", str(rerank_run), "--text", query, "--k", "6",
                             "--json", "--device", "cpu")
    assert code == 0, err
    got = [r["id"] for r in json.loads(out)["results"]]
    images = [image_of(i) for i in got]
    assert len(images) == len(set(images))  # one picture, one result

    loaded = load_run(rerank_run)
    gallery = embed_records(loaded.model, loaded.preprocess, loaded.test)
    rows, _ = distinct_images(gallery.image_keys, len(gallery.ids))
    items = gallery.image[torch.as_tensor(rows)]
    with torch.no_grad():
        q = loaded.model.encode_text(loaded.preprocess.text([query])).float()
        relation = loaded.model.score_matrix(q, items)[0].numpy()
    order = rerank(cosine_scores(q, items), relation[None], RERANK_K)[0].argsort()[::-1]
    assert got == [gallery.ids[rows[j]] for j in order[:6]]


def test_index_keeps_the_trained_first_stage_and_lists_images_once(rerank_run, tmp_path,
                                                                    capsys):
    out = tmp_path / "idx"
    code, stdout, err = run_cli(capsys, "index", str(rerank_run), "--gallery", "test", "--out",
                                str(out), "--device", "cpu", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    info = json.loads((out / "index.json").read_text())
    assert info["first_stage"]["method"] == "cosine"
    assert report["totals"]["text"] == 3 * report["totals"]["image"]

    code, stdout, err = run_cli(capsys, "search", str(rerank_run), "--index", str(out),
                                "--text", "a small red circle", "--k", "2", "--json",
                                "--device", "cpu")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["candidates"] == RERANK_K  # the relation head re-scores what it was tested on
