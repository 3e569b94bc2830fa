"""The Python entry points of training: what ``daer train`` and ``daer benchmark`` call."""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Mapping

from ..config import RunConfig, load_run_config, load_saved_config
from ..errors import CheckpointError, ConfigError
from .run_dir import is_run_dir
from .trainer import Trainer

log = logging.getLogger(__name__)


def default_run_dir(config: RunConfig, root: Path = Path("runs")) -> Path:
    """``runs/<name>``, where name defaults to ``<preset>-<dataset>``; never reuses a run."""
    name = config.name or f"{config.preset or 'custom'}-{config.dataset.name if config.dataset else 'nodata'}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    path = root / name
    if path.exists():
        path = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return path


def train_and_evaluate(config: RunConfig | Mapping[str, Any], out_dir: Path | str, *,
                       resume: bool = False, registry=None) -> dict:
    """Train a run into ``out_dir`` (or resume it) and return its test metrics.

    ``config`` is a resolved :class:`RunConfig` or a raw dict (resolved here). The returned
    dict has top-level ``i2t``, ``t2i``, ``avg`` and ``chance`` (test-split mAP@all).
    """
    if not isinstance(config, RunConfig):
        config = load_run_config(dict(config), registry=registry)
    trainer = Trainer(config, Path(out_dir), registry)
    # the run directory stays this run's through the evaluation too: metrics.json is the run's
    with trainer.locked(resume=resume):
        try:
            trainer.train(resume=resume)
            return trainer.evaluate()
        finally:
            trainer.close_trackers()


def resume_run(run_dir: Path | str, *, registry=None) -> dict:
    """Continue an interrupted run from its last checkpoint, with its own saved config."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (config.yaml missing)")
    if not is_run_dir(run_dir):
        # a user's folder with a config.yaml of their own: resuming would write split.json,
        # log.jsonl and checkpoints into it as if a run had been interrupted there
        raise CheckpointError(
            f"{run_dir}: holds a config.yaml but is not a daer run directory (no run marker,"
            f" checkpoint or training log); nothing was changed. To train that config:"
            f" daer train {cfg_path} --out NEW_FOLDER")
    try:
        config = load_saved_config(cfg_path, registry=registry)
    except ConfigError as exc:
        # a config.yaml cut short or edited since the run started: the checkpoints hold the
        # one they were trained with (the same hint as a digest mismatch gives)
        from .checkpoint import latest_tag
        tag = latest_tag(run_dir) or "<tag>"
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{cfg_path}: cannot be read as this run's config ({first}); it was damaged or"
            f" edited since the run started. The original is kept as `config_yaml` in"
            f" {run_dir / 'checkpoints' / tag / 'state.json'}: restore config.yaml from it to"
            " resume") from None
    return train_and_evaluate(config, run_dir, resume=True, registry=registry)
