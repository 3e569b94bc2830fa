"""A study of ``daer tune``: storage, seeded sampler, pruner, budget and interrupted trials.

Optuna does the search; this module adds what a study of *training runs* needs:

* **Storage.** A study folder holds ``study.journal`` (Optuna's journal file, safe for
  several processes on one file system); any storage URL Optuna accepts (``sqlite:///…``,
  ``postgresql://…``) lets processes on several machines share one study instead, with
  Optuna's heartbeat marking trials of a machine that died.
* **An exact budget.** ``trials`` counts trials of the whole study, every worker together:
  a trial whose number comes after the budget is full is closed unrun (``surplus``), so two
  workers racing for the last trial never run one too many.
* **Interrupted trials resume.** A trial left ``RUNNING`` by a process that no longer exists
  (killed, machine rebooted) is marked failed and its settings are queued again with its run
  directory; the next trial with them resumes that run from its last checkpoint. Finished
  trials are never repeated.
* **Seeds.** The TPE sampler is seeded with ``tune.seed`` plus the number of trials already
  in the study, so a one-worker study draws the same settings on every machine.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, DaerError, TrainingError
from ..training import checkpoint as ck
from . import report as rp
from .space import apply_params, check_space, config_values, suggest_params
from .trial import run_trial

log = logging.getLogger(__name__)

MARKER_NAME = ".daer-study.json"
JOURNAL_NAME = "study.journal"
#: user attributes that take a trial out of the budget (it never produced a result)
NOT_COUNTED = ("interrupted", "surplus")
#: consecutive failing trials after which a study stops (the space, not luck, is wrong)
MAX_CONSECUTIVE_FAILURES = 3


@dataclass
class TuneResult:
    """What a study produced (also written to ``study.json`` in the study folder)."""

    out_dir: Path
    study_name: str
    storage: str
    trials: dict[str, int]                 # state -> count (this study, every worker)
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_config: Path | None = None
    seconds: float = 0.0
    stopped_by: str = ""


def is_url(storage: str) -> bool:
    return "://" in storage


def _check_study_folder(out_dir: Path) -> None:
    """A study writes only into a new or empty folder, or one an earlier study made."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a folder; choose another --out")
    if not out_dir.is_dir() or (out_dir / MARKER_NAME).is_file():
        return
    entries = sorted(p.name for p in out_dir.iterdir())
    if entries:
        raise ConfigError(f"{out_dir}: the folder is not empty and is not a daer study (it"
                          f" holds {', '.join(entries[:5])}); a study writes trials, plots"
                          " and best.yaml there. Choose a new or empty folder")


def open_study(out_dir: Path, study_name: str, storage: str | None = None, *,
               direction: str = "maximize"):
    """Create or load ``study_name`` in ``storage`` (default: the folder's journal file)."""
    import optuna

    out_dir = Path(out_dir)
    _check_study_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage = str(out_dir / JOURNAL_NAME)
    if is_url(storage):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                                message=".*heartbeat")
        backend: Any = optuna.storages.RDBStorage(
            storage, heartbeat_interval=60, grace_period=300,
            heartbeat_stale_trial_callback=lambda study, trial: _queue_again(study, trial))
    else:
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        backend = JournalStorage(JournalFileBackend(storage))
    ck.atomic_write_json(out_dir / MARKER_NAME, {"study_name": study_name, "storage": storage})
    study = optuna.create_study(study_name=study_name, storage=backend, direction=direction,
                                load_if_exists=True)
    return study, storage


def _queue_again(study, trial) -> None:
    """Queue the settings of an interrupted trial with its run directory, once."""
    if any(t.user_attrs.get("resumes") == trial.number for t in study.get_trials(deepcopy=False)):
        return
    study.enqueue_trial(dict(trial.params), user_attrs={
        "run_dir": trial.user_attrs.get("run_dir"), "resumes": trial.number})
    log.warning("trial %d was interrupted; its settings are queued again and will resume"
                " from its run directory", trial.number)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(study) -> int:
    """Fail and re-queue RUNNING trials whose worker process on this machine is gone."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    host = socket.gethostname()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") != host or not isinstance(worker.get("pid"), int):
            continue
        if worker["pid"] == os.getpid() or _pid_alive(worker["pid"]):
            continue
        storage = study._storage
        try:  # another worker may be recovering it at this moment: the first one wins
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        _queue_again(study, storage.get_trial(t._trial_id))
        n += 1
    return n


def requeued(trials) -> set[int]:
    """Numbers of trials whose settings were queued again (interrupted, or failed by a
    database storage's heartbeat)."""
    return {t.user_attrs["resumes"] for t in trials if t.user_attrs.get("resumes") is not None}


def counted(trials) -> list:
    """Trials that use up the budget: all but interrupted (re-queued) and surplus ones."""
    again = requeued(trials)
    return [t for t in trials if not any(t.user_attrs.get(a) for a in NOT_COUNTED)
            and t.number not in again]


def tune(config: RunConfig, out_dir: Path | str, *, trials: int | None = None,
         minutes: float | None = None, storage: str | None = None,
         study_name: str | None = None, registry=None) -> TuneResult:
    """Run trials of ``config``'s study until the budget is spent; return the best.

    ``trials`` and ``minutes`` default to ``tune.trials`` and ``tune.minutes``. Several
    processes may call this on one storage at once; each stops when the study as a whole
    has ``trials`` trials (see module docs). Afterwards the study folder holds
    ``best.yaml``, ``trials.csv`` / ``trials.md`` and ``history.png`` / ``importance.png``.
    """
    import optuna
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    tc = config.tune
    n_trials = trials if trials is not None else tc.trials
    minutes = minutes if minutes is not None else tc.minutes
    if n_trials < 1:
        raise ConfigError(f"--trials: must be at least 1, got {n_trials}")
    space = check_space(config, registry)
    name = study_name or config.name or f"{config.preset or 'custom'}-{config.dataset.name}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # daer prints one line per trial
    study, storage = open_study(out_dir, name, storage)
    study.pruner = (optuna.pruners.MedianPruner(n_startup_trials=tc.startup_trials)
                    if tc.pruner == "median" else optuna.pruners.NopPruner())
    base = config.model_dump(mode="json")
    base.pop("preset", None)
    if tc.start_with_config and not study.get_trials(deepcopy=False):
        _enqueue_start(study, base, space)
    runner = _TrialRunner(study, base, space, name, out_dir / "trials", tc, registry)
    done_before = sum(t.state.is_finished() for t in counted(study.get_trials(deepcopy=False)))
    bar = tqdm(total=n_trials, initial=min(n_trials, done_before), desc=f"study {name}",
               unit="trial", disable=None)  # frames on a terminal only (a log file gets lines)
    t0 = time.monotonic()
    stopped_by = "trials"
    try:
        while True:
            if minutes is not None and time.monotonic() - t0 >= minutes * 60:
                stopped_by = "minutes"
                break
            trial = _next_trial(study, tc, n_trials)
            if trial is None:
                break
            runner.run(trial)
            bar.update(1)
    finally:
        bar.close()
    result = rp.write_report(study, out_dir, base, storage, registry=registry)
    result.seconds = time.monotonic() - t0
    result.stopped_by = stopped_by
    return result


def _enqueue_start(study, base: dict[str, Any], space) -> None:
    """A new study's first trial: the config's own values, when they lie in the space."""
    start = config_values(base, space)
    if start is not None:
        study.enqueue_trial(start, user_attrs={"start": True}, skip_if_exists=True)
    else:
        log.info("the config's own values are not all inside tune.space; the first trial is"
                 " sampled like the others")


def _next_trial(study, tc, n_trials: int):
    """The next trial to run, or None when the study's budget is spent (every worker
    together). Interrupted trials are recovered first; a trial that another worker's
    race made one too many is closed unrun (``surplus``)."""
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    recover_interrupted(study)
    if is_heartbeat_enabled(study._storage):  # a database URL: machines that stopped beating
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    everything = study.get_trials(deepcopy=False)
    if len(counted(everything)) >= n_trials and not any(
            t.state == TrialState.WAITING for t in everything):
        return None
    study.sampler = optuna.samplers.TPESampler(
        seed=tc.seed + len(everything), n_startup_trials=tc.startup_trials, constant_liar=True)
    with warnings.catch_warnings():  # the runner records the heartbeat itself
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        trial = study.ask()
    before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < trial.number]
    if len(before) >= n_trials:  # another worker filled the budget meanwhile
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


class _TrialRunner:
    """Runs one trial of the study as a training run and tells the study how it ended."""

    def __init__(self, study, base: dict[str, Any], space, name: str, trials_dir: Path,
                 tc, registry):
        self.study, self.base, self.space, self.name = study, base, space, name
        self.trials_dir, self.tc, self.registry = trials_dir, tc, registry
        self.failures = 0   # in a row

    def _run_dir(self, trial) -> Path:
        own = self.trials_dir / f"trial-{trial.number:04d}"
        resumed = trial.user_attrs.get("run_dir")
        # a re-queued trial continues its predecessor's folder (when it is on this machine)
        return Path(resumed) if resumed and Path(resumed).is_dir() else own

    def run(self, trial) -> None:
        import optuna
        from optuna.storages._heartbeat import get_heartbeat_thread
        from optuna.trial import TrialState

        study, tc = self.study, self.tc
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        run_dir = self._run_dir(trial)
        trial.set_user_attr("run_dir", str(run_dir))
        params = suggest_params(trial, self.space)
        data = apply_params(self.base, params)
        data["name"] = f"{self.name}-trial-{trial.number}"
        started = time.monotonic()
        try:
            # (ask/tell runs no heartbeat of its own: Optuna's optimize loop would)
            with get_heartbeat_thread(trial._trial_id, study._storage):
                value = run_trial(trial, data, run_dir,
                                  resume=trial.user_attrs.get("resumes") is not None,
                                  pruning=tc.pruner == "median",
                                  keep_checkpoints=tc.keep_checkpoints, prune_on=tc.prune_on,
                                  registry=self.registry)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            self.failures = 0
            log.info("trial %d pruned after %.0f s: %s", trial.number,
                     time.monotonic() - started, exc)
            return
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            _queue_again(study, study._storage.get_trial(trial._trial_id))
            raise
        except (DaerError, ValueError, RuntimeError, OSError) as exc:
            self._failed(trial, exc, run_dir)
            return
        self.failures = 0
        study.tell(trial, value)
        best = study.best_trial
        log.info("trial %d: validation mAP %.4f in %.0f s (best %.4f, trial %d) %s",
                 trial.number, value, time.monotonic() - started, best.value, best.number,
                 _short(params))

    def _failed(self, trial, exc: BaseException, run_dir: Path) -> None:
        """Record a failed trial; three in a row stop the study (the space is wrong)."""
        from optuna.trial import TrialState
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        self.study.tell(trial, state=TrialState.FAIL)
        self.failures += 1
        log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
        if self.failures >= MAX_CONSECUTIVE_FAILURES:
            raise TrainingError(
                f"{self.failures} trials in a row failed; the last: {type(exc).__name__}:"
                f" {exc} (run folder {run_dir}). Narrow tune.space or fix the config"
            ) from exc


def _short(params: dict[str, Any]) -> str:
    """``text.lr=0.05, enhancement.k=0.6``: key paths without their structural parts."""
    skip = {"train", "stages", "optimizer", "params", "pipeline", "recipe"}

    def name(key: str) -> str:
        return ".".join(p for p in key.split(".") if p not in skip) or key

    return ", ".join(f"{name(k)}={v:.3g}" if isinstance(v, float) else f"{name(k)}={v}"
                     for k, v in params.items())
