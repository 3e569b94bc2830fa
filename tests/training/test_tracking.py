"""Experiment tracking beside the JSONL log: TensorBoard event files, MLflow when configured."""
from __future__ import annotations

import sys
import types

import pytest

from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.training.api import train_and_evaluate


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_a_run_writes_tensorboard_scalars_and_pictures(tmp_path, tiny_config):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    acc = _scalars(run / "tensorboard")
    tags = acc.Tags()
    assert {"text/train_loss", "text/val_accuracy", "image/val_accuracy",
            "relation/val_avg", "test/avg", "test/chance"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("text/train_loss")] == [1, 2]
    import json
    metrics = json.loads((run / "metrics.json").read_text())
    assert acc.Scalars("test/avg")[0].value == pytest.approx(metrics["avg"], rel=1e-6)
    assert {"pr_curve", "examples"} <= set(tags["images"])


def test_tensorboard_can_be_switched_off(tmp_path, tiny_config):
    cfg = tiny_config(train__stages__relation__epochs=1)
    cfg["train"]["tracking"] = {"tensorboard": False}
    train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_mlflow_gets_params_metrics_and_pictures_when_configured(tmp_path, tiny_config,
                                                                  monkeypatch):
    """Against a stand-in `mlflow` module that records the calls daer makes (the real
    package is a large optional install; its API is these six functions)."""
    calls: list[tuple] = []
    fake = types.ModuleType("mlflow")
    for name in ("set_tracking_uri", "set_experiment", "start_run", "log_params",
                 "log_metrics", "log_artifact", "end_run"):
        setattr(fake, name, lambda *a, _n=name, **k: calls.append((_n, a, k)))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    cfg = tiny_config(train__stages__relation__epochs=1)
    cfg["train"]["tracking"] = {"tensorboard": False, "mlflow_uri": "file:./mlruns",
                                "mlflow_experiment": "exp"}
    train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    names = [c[0] for c in calls]
    assert names[:3] == ["set_tracking_uri", "set_experiment", "start_run"]
    assert calls[0][1] == ("file:./mlruns",) and calls[1][1] == ("exp",)
    params = next(c[1][0] for c in calls if c[0] == "log_params")
    assert params["train.stages.relation.epochs"] == "1"
    steps = [c for c in calls if c[0] == "log_metrics" and "text.train_loss" in c[1][0]]
    assert [c[2]["step"] for c in steps] == [1, 2]
    assert any(c[0] == "log_metrics" and "test.avg" in c[1][0] for c in calls)
    assert {c[1][0].rsplit("/", 1)[-1] for c in calls if c[0] == "log_artifact"} == {
        "pr_curve.png", "examples.png"}
    assert names[-1] == "end_run"


def test_mlflow_configured_but_missing_is_a_config_error(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)   # import mlflow -> ImportError
    cfg = tiny_config(train__stages__relation__epochs=1)
    cfg["train"]["tracking"] = {"mlflow_uri": "file:./mlruns"}
    with pytest.raises(ConfigError, match="pip install mlflow"):
        train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    assert not (tmp_path / "run").exists()                 # refused before writing
