"""Data that trains but cannot say anything is called out before training."""
from __future__ import annotations

import json
import logging

from PIL import Image

from daer_core.config import load_run_config
from daer_core.training.trainer import Trainer


def test_a_one_class_dataset_warns_that_map_is_chance(tmp_path, tiny_config, caplog):
    rows = []
    for k in range(12):
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / f"{k}.jpg")
        rows.append({"image": f"{k}.jpg", "text": f"a dog number {k}", "labels": "dog"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config()
    cfg["dataset"] = {"name": "manifest", "params": {"root": str(tmp_path)}}
    with caplog.at_level(logging.WARNING):
        Trainer(load_run_config(cfg), tmp_path / "run")
    assert "every training pair has the same class" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Trainer(load_run_config(tiny_config()), tmp_path / "run2")
    assert "same class" not in caplog.text
