"""A DAER cell through the real training API (tiny shapes run, one epoch per stage)."""
from __future__ import annotations

import csv

import pytest
import torch
import yaml

import registry
from daer_core.benchmark import load_benchmark_config, run_benchmark

STAGE = {"epochs": 1, "batch_size": 8}
TINY_DAER = {
    "preset": "daer-c",
    "pipeline": {
        "text": {"encoder": {"name": "word2vec-lstm",
                             "params": {"vector_size": 16, "hidden_size": 16, "out_dim": 16}}},
        "image": {"encoder": {"name": "mobilenetv3-large", "params": {"out_dim": 16}}},
        "relation": {"name": "mlp", "params": {"in_dim": 32, "hidden": [16, 8]}}},
    "train": {"device": "cpu", "threads": 1,
              "stages": {"text": STAGE, "image": STAGE, "relation": STAGE}},
    "evaluate": {"examples": 1, "block_size": 5},
}


@pytest.mark.slow
def test_daer_cell_trains_and_lands_in_table_3(tmp_path):
    reg = registry.get_registry()
    if not reg.has("dataset", "shapes") or not reg.presets("daer-c"):
        pytest.skip("shapes dataset or daer-c preset not installed")
    torch.set_num_threads(1)
    (tmp_path / "pyproject.toml").write_text("")
    cfg = {"runs": 1, "datasets": {"shapes": {
               "dataset": {"name": "shapes", "params": {"num_pairs": 40, "num_classes": 4,
                                                        "image_size": 32, "seed": 1}},
               "image_features": {"name": "backbone-pool",
                                  "params": {"backbone": "resnet18", "image_size": 32}},
               "text_features": {"name": "tfidf", "params": {"min_df": 1}}}},
           "methods": {"CCA": {"name": "cca"}, "DAER-C": {"daer": TINY_DAER}}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    config, _ = load_benchmark_config(path)
    outcome = run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    with outcome.results_csv.open() as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert rows["DAER-C"]["kind"] == "daer" and 0 <= float(rows["DAER-C"]["avg"]) <= 1
    assert int(rows["DAER-C"]["n_train"]) > 0
    assert list((tmp_path / "out" / "daer" / "DAER-C" / "shapes").glob("run-0-*/split.json"))
    table3 = outcome.markdown.split("## Table 3")[1].split("## Cost")[0]
    assert "| DAER-C |" in table3 and "| CCA |" not in table3


@pytest.mark.slow
def test_a_tuned_daer_cell_searches_on_validation_then_trains_its_best(tmp_path):
    reg = registry.get_registry()
    torch.set_num_threads(1)
    (tmp_path / "pyproject.toml").write_text("")
    daer = {**TINY_DAER, "tune": {"space": {
        "train.stages.text.optimizer.lr": None, "train.stages.image.optimizer.lr": None,
        "train.stages.image.epochs": None, "train.stages.relation.epochs": None}}}
    cfg = {"runs": 1, "tune": {"trials": 2},
           "datasets": {"shapes": {
               "dataset": {"name": "shapes", "params": {"num_pairs": 40, "num_classes": 4,
                                                        "image_size": 32, "seed": 1}}}},
           "methods": {"DAER-C": {"daer": daer}}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    config, _ = load_benchmark_config(path)
    outcome = run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    with outcome.results_csv.open() as fh:
        row = next(csv.DictReader(fh))
    assert int(row["tune_trials"]) == 2 and float(row["tune_seconds"]) > 0
    cell = next((tmp_path / "out" / "daer" / "DAER-C" / "shapes").glob("run-0-*"))
    best = yaml.safe_load((cell / "tune" / "best.yaml").read_text())
    lr = best["train"]["stages"]["relation"]["optimizer"]["lr"]
    assert yaml.safe_load((cell / "run" / "config.yaml").read_text())[
        "train"]["stages"]["relation"]["optimizer"]["lr"] == lr
    assert (cell / "run" / "metrics.json").is_file()
    assert "2 trials per run for DAER-C" in outcome.markdown
