"""One trial of a study: an ordinary run directory, trained on train and scored on val.

The trainer is built without the test split (the dataset is never asked for it), every
epoch's validation score goes to the pruner, and the trial's value is the final model's
validation mAP (image->text and text->image averaged), scored as a retrieval stage's epochs
are. A trial interrupted by a kill is resumed in its own run directory by a later trial
with the same settings (:mod:`.study`), its finished epochs reported again from the log.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..config import RunConfig, load_run_config
from ..training import checkpoint as ck
from ..training.trainer import EpochReport, Trainer

log = logging.getLogger(__name__)

#: stages are at most this many epochs apart in a trial's step numbers (see report_step)
STEPS_PER_STAGE = 10_000
RESULT_NAME = "tune_result.json"


def report_step(stage_index: int, epoch: int) -> int:
    """The pruner's step for an epoch: ``stage_index * 10000 + epoch``.

    Scores of different stages are not comparable (stage 1 reports text accuracy, the
    relation stage mAP), and the pruner compares trials at equal steps; this numbering makes
    equal steps mean the same stage and the same epoch in every trial, whatever the other
    stages' epoch counts are.
    """
    return stage_index * STEPS_PER_STAGE + epoch


def logged_epochs(run_dir: Path) -> list[tuple[int, float]]:
    """(step, score) of the epochs a run directory's log already holds, for a resumed trial.

    The stage index is recovered from the order of ``epoch`` events: a new stage starts
    whenever the stage name changes.
    """
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    out: list[tuple[int, float]] = []
    stage_index, last_stage = -1, None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("event") != "epoch":
            continue
        if rec.get("stage") != last_stage:
            stage_index, last_stage = stage_index + 1, rec.get("stage")
        score = rec.get("val_score", rec.get("val_avg", rec.get("val_accuracy")))
        if isinstance(score, (int, float)):
            out.append((report_step(stage_index, int(rec["epoch"])), float(score)))
    return out


def run_trial(trial, config_data: Mapping[str, Any], run_dir: Path, *, resume: bool,
              pruning: bool, keep_checkpoints: bool, prune_on: str = "retrieval",
              registry=None) -> float:
    """Train ``config_data`` into ``run_dir`` for ``trial``; return the validation mAP.

    Raises ``optuna.TrialPruned`` when the pruner stops the trial after an epoch.
    """
    import optuna

    config: RunConfig = load_run_config(dict(config_data), registry=registry)
    trainer = Trainer(config, run_dir, registry, splits=("train", "val"))
    if not trainer.splits["val"]:
        from ..errors import DataError
        raise DataError(f"dataset {config.dataset.name!r} has no validation split: tuning"
                        " chooses settings on it (a dataset param such as val_fraction"
                        " carves one from the training split)")
    reported: set[int] = set()
    if resume:
        for step, score in logged_epochs(run_dir):
            if step not in reported:
                trial.report(score, step)
                reported.add(step)

    def report(epoch: EpochReport) -> None:
        if epoch.score is None:
            return
        step = report_step(epoch.stage_index, epoch.epoch)
        if step in reported:
            return
        trial.report(float(epoch.score), step)
        reported.add(step)
        may_prune = prune_on == "all" or epoch.validation == "retrieval"
        if pruning and may_prune and trial.should_prune():
            raise optuna.TrialPruned(f"{epoch.stage} epoch {epoch.epoch}: validation"
                                     f" {epoch.score:.4f} below the median of earlier trials")

    trainer.epoch_hooks.append(report)
    try:  # resume: from the last checkpoint, or from the start if none was written
        trainer.train(resume=resume)
        metrics = trainer.validation_metrics()
    except optuna.TrialPruned:
        _finish(run_dir, {"state": "pruned"}, keep_checkpoints)
        raise
    finally:
        trainer.close_trackers()
    _finish(run_dir, {"state": "complete", **metrics}, keep_checkpoints)
    # mAP average, or mean Recall@K under the instance protocol
    return float(metrics.get("val_score", metrics.get("val_avg")))


def _finish(run_dir: Path, result: dict, keep_checkpoints: bool) -> None:
    """Record the trial's outcome in its folder; drop its checkpoints unless kept (each
    trial would otherwise leave several copies of the model behind)."""
    ck.atomic_write_json(run_dir / RESULT_NAME, result)
    if keep_checkpoints:
        return
    folder = run_dir / "checkpoints"
    for d in ck.checkpoint_dirs(run_dir):
        shutil.rmtree(d)
    latest = folder / "LATEST"
    if latest.is_file():
        latest.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
