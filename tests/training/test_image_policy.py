"""Issue 14, case 6 on the training side: `train` obeys the image policy `data check` reports."""
from __future__ import annotations

import json

import pytest

from daer_core.config import load_run_config
from daer_core.errors import DataError
from daer_core.training.api import train_and_evaluate

from data_files import write_image_manifest


def test_train_obeys_the_policy_data_check_reports(tmp_path, tiny_config):
    """Case 6: `data check` said 'not usable' while `train` (default missing: error) skipped
    the image and exited 0. Now train stops before writing anything, naming the pair; with
    missing: skip it trains without it, as the check says."""
    root = write_image_manifest(tmp_path / "data")
    (root / "img" / "5.jpg").write_bytes(b"not an image at all")
    cfg = tiny_config(train__stages__text__epochs=1, train__stages__image__epochs=1,
                      train__stages__relation__epochs=1)
    cfg["dataset"] = {"name": "manifest", "params": {"root": str(root)}}
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"row-6: cannot decode image .*5\.jpg.*missing=skip"):
        train_and_evaluate(load_run_config(cfg), run)
    assert not (run / "config.yaml").exists() and not (run / "checkpoints").exists()
    cfg["dataset"]["params"]["missing"] = "skip"
    train_and_evaluate(load_run_config(cfg), tmp_path / "run2")
    events = [json.loads(line) for line in (tmp_path / "run2" / "log.jsonl").open()]
    assert any(e["event"] == "skip" and e["id"] == "row-6" for e in events)
