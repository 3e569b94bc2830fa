"""A run's events: the JSONL log (:class:`RunLog`) and, beside it, experiment tracking —
TensorBoard event files and, when configured, MLflow. The JSONL log stays the record a run
is resumed and audited from; trackers are views of it for the tools researchers already use
to compare runs.

Every event the trainer logs is offered to each tracker; a tracker keeps what it can show:

* ``epoch`` -> one scalar per number, tagged ``<stage>/<key>`` at step = the stage's epoch;
* ``test`` -> ``test/<key>`` scalars, plus the run's ``pr_curve.png`` and ``examples.png``
  as images (TensorBoard) or artifacts (MLflow);
* ``start`` -> the resolved config, as text (TensorBoard) or flattened params (MLflow).

Under ``torchrun`` only rank 0 tracks (the trainer logs from rank 0 alone). A tracker that
fails (a full disk, an unreachable MLflow server) is switched off with one warning instead
of stopping the training it only observes.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
PICTURES = ("pr_curve.png", "examples.png")


def _numbers(fields: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in fields.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


class TensorBoardTracker:
    """Event files in ``<run>/tensorboard/`` (``tensorboard --logdir runs``)."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter
        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))

    def event(self, event: str, fields: Mapping[str, Any]) -> None:
        if event == "epoch":
            stage, step = fields.get("stage", "train"), int(fields.get("epoch", 0))
            for key, value in _numbers(fields).items():
                if key not in ("epoch", "time"):
                    self.writer.add_scalar(f"{stage}/{key}", value, step)
        elif event == "test":
            for key, value in _numbers(fields).items():
                if key != "time":
                    self.writer.add_scalar(f"test/{key}", value, 0)
            for name in PICTURES:
                self._picture(name)
        elif event == "start":
            text = json.dumps(fields.get("config", {}), indent=2)
            self.writer.add_text("config", f"```\n{text}\n```", 0)
        self.writer.flush()

    def _picture(self, name: str) -> None:
        path = self.run_dir / name
        if not path.is_file():
            return
        import numpy as np
        from PIL import Image
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(name.removesuffix(".png"), pixels, 0, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def require_mlflow():
    """The mlflow module, or a ConfigError naming the key (checked before a run writes)."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("train.tracking.mlflow_uri is set but mlflow is not installed:"
                          " pip install mlflow (or unset the key)") from None
    return mlflow


class MLflowTracker:
    """One MLflow run per daer run: params from the config, metrics per epoch, pictures as
    artifacts. Needs ``pip install mlflow`` and ``train.tracking.mlflow_uri``."""

    def __init__(self, run_dir: Path, uri: str, experiment: str, run_name: str):
        self.mlflow = require_mlflow()
        mlflow = self.mlflow
        self.run_dir = Path(run_dir)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        self.epochs: dict[str, int] = {}

    def event(self, event: str, fields: Mapping[str, Any]) -> None:
        if event == "start":
            params = {k: str(v)[:500] for k, v in _flatten(fields.get("config", {})).items()}
            self.mlflow.log_params(params)
        elif event == "epoch":
            stage, step = fields.get("stage", "train"), int(fields.get("epoch", 0))
            metrics = {f"{stage}.{k}": v for k, v in _numbers(fields).items()
                       if k not in ("epoch", "time")}
            self.mlflow.log_metrics(metrics, step=step)
        elif event == "test":
            self.mlflow.log_metrics({f"test.{k}": v for k, v in _numbers(fields).items()
                                     if k != "time"})
            for name in PICTURES:
                if (self.run_dir / name).is_file():
                    self.mlflow.log_artifact(str(self.run_dir / name))

    def close(self) -> None:
        self.mlflow.end_run()


class Trackers:
    """The run's trackers; each event goes to all of them, a failing one is dropped."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    @classmethod
    def for_run(cls, config, run_dir: Path) -> "Trackers":
        tc = config.train.tracking
        out: list = []
        if tc.tensorboard:
            try:
                out.append(TensorBoardTracker(run_dir))
            except ImportError:
                log.warning("train.tracking.tensorboard: the tensorboard package is not"
                            " installed; no event files are written (pip install tensorboard)")
        if tc.mlflow_uri:
            out.append(MLflowTracker(run_dir, tc.mlflow_uri, tc.mlflow_experiment,
                                     config.name or run_dir.name))
        return cls(out)

    def event(self, event: str, fields: Mapping[str, Any]) -> None:
        for tracker in list(self.trackers):
            try:
                tracker.event(event, fields)
            except Exception as exc:  # noqa: BLE001 - tracking only observes the run
                log.warning("%s failed (%s: %s); it is switched off for this run",
                            type(tracker).__name__, type(exc).__name__, exc)
                self.trackers.remove(tracker)

    def close(self) -> None:
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing %s failed: %s", type(tracker).__name__, exc)
        self.trackers = []


class RunLog:
    """``<run>/log.jsonl``, one JSON object a line (``time``, ``event`` and the event's
    fields), each event also offered to the run's trackers (opened with the first line).
    Only the main process writes: on other ranks an event is dropped."""

    def __init__(self, config, run_dir: Path, is_main: bool = True):
        self.config = config
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.trackers: Trackers | None = None

    def event(self, event: str, **fields: Any) -> None:
        if not self.is_main:  # one process writes the run directory
            return
        rec = {"time": round(time.time(), 3), "event": event, **fields}
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.trackers is None:
            self.trackers = Trackers.for_run(self.config, self.run_dir)
        self.trackers.event(event, fields)

    def close(self) -> None:
        """Close the trackers (a later event opens them again)."""
        if self.trackers is not None:
            self.trackers.close()
            self.trackers = None
