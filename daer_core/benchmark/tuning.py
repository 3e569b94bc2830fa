"""Equal tuning budgets in ``daer benchmark``: each cell searches on its run's own
validation rows before it ranks the test split once.

Baselines (registered methods) are searched over their params (``methods.<m>.space``) with an
in-memory Optuna study: fit on the run's training rows, rank the rows the run's resample left
out. Trained methods run ``daer tune`` on their run config's ``tune.space``; their dataset
carves the validation split with the run's seed, so with a ``subsample`` resample both kinds
choose settings on the same rows. The budget (trials, minutes) is the benchmark's, the same
for every method unless a method names its own. A cell's first trial is the method's own
settings, so tuning never picks something worse on validation than the config gave.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .config import MethodEntry, ResampleConfig, TuneBudget
from .data import BenchmarkData

log = logging.getLogger(__name__)


@dataclass
class Tuned:
    """The outcome of a cell's search."""

    params: dict[str, Any] = field(default_factory=dict)   # the settings chosen
    trials: int = 0                                          # trials that finished
    seconds: float = 0.0
    value: float | None = None                               # best validation mAP


def validation_rows(n: int, rows: np.ndarray, resample: ResampleConfig) -> np.ndarray:
    """The training rows a run does not fit on: its validation rows when tuning a baseline."""
    if resample.mode == "none":
        raise ConfigError("tune: a baseline is tuned on the training rows its run leaves out,"
                          " and resample: none leaves none; use resample: subsample (the"
                          " rows trained methods carve for validation)")
    left = np.setdiff1d(np.arange(n), np.unique(rows))
    if len(left) < 2:
        raise ConfigError(f"tune: the resample leaves {len(left)} training rows out; a"
                          " validation ranking needs at least 2 (lower resample.fraction)")
    return left


def tune_baseline(registry, entry: MethodEntry, data: BenchmarkData, rows: np.ndarray,
                  seed: int, budget: TuneBudget, resample: ResampleConfig,
                  rank) -> Tuned:
    """Search ``entry.space`` with ``budget``; return the best params (validation mAP)."""
    import optuna

    from ..tuning.space import suggest_params
    if not entry.space:
        return Tuned(params=dict(entry.params))
    val = validation_rows(len(data.train.labels), rows, resample)
    train = data.train
    img, txt, labels = (np.asarray(train.image), np.asarray(train.text),
                        np.asarray(train.labels))

    def objective(trial) -> float:
        params = {**entry.params, **suggest_params(trial, entry.space)}
        return rank(params, img[rows], txt[rows], labels[rows], img[val], txt[val],
                    labels[val])["avg"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=budget.seed + seed))
    from ..tuning.space import config_values
    start = config_values(entry.params, entry.space)
    if start is not None:
        study.enqueue_trial(start)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=budget.trials,
                   timeout=budget.minutes * 60 if budget.minutes else None,
                   catch=(ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError))
    seconds = time.perf_counter() - t0
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and np.isfinite(t.value)]
    if not done:
        log.warning("%s: no trial of the search finished; its own params are used",
                    entry.name)
        return Tuned(params=dict(entry.params), trials=len(study.trials), seconds=seconds)
    best = max(done, key=lambda t: t.value)
    return Tuned(params={**entry.params, **best.params}, trials=len(study.trials),
                 seconds=seconds, value=float(best.value))


def tune_daer(cfg: dict[str, Any], study_dir: Path, seed: int, budget: TuneBudget,
              registry=None) -> tuple[dict[str, Any], Tuned]:
    """``daer tune`` on a trained cell's run config; returns the best config (as a dict)."""
    from ..config import load_run_config
    from ..tuning import tune
    cfg = copy.deepcopy(cfg)
    tune_cfg = cfg.setdefault("tune", {})
    tune_cfg.update({"trials": budget.trials, "minutes": budget.minutes,
                     "seed": budget.seed + seed})
    config = load_run_config(cfg, registry=registry)
    result = tune(config, study_dir, trials=budget.trials, minutes=budget.minutes,
                  study_name="cell", registry=registry)
    finished = sum(n for state, n in result.trials.items() if state in ("complete", "pruned"))
    tuned = Tuned(params=result.best_params, trials=finished, seconds=result.seconds,
                  value=result.best_value)
    if result.best_config is None:
        log.warning("%s: no trial completed; the cell trains its own config", study_dir)
        return cfg, tuned
    from ..config.loading import read_config_file
    best = read_config_file(result.best_config)
    best["name"] = cfg.get("name")
    return best, tuned
