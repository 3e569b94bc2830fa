"""``daer tune`` as separate processes: a killed study resumes, two workers share a study.

These start real ``daer tune`` processes (the way a user or a cluster runs them) on one
Optuna journal file, so they take a few tens of seconds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState
from tune_configs import tiny_tune_config

from daer_core.tuning import open_study

pytestmark = pytest.mark.slow


def _start(cfg: Path, study: Path, trials: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "daer_core.cli.main", "tune", str(cfg), "--trials", str(trials),
         "--study", str(study)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)


def _config(tmp_path: Path, **tune) -> Path:
    data = tiny_tune_config()
    data["tune"].update(tune)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _trials(study: Path):
    return open_study(study, "tiny-study")[0].get_trials()


def _starts(run_dir: Path) -> int:
    return sum(json.loads(line)["event"] == "start"
               for line in (run_dir / "log.jsonl").read_text().splitlines())


def test_a_killed_study_resumes_without_repeating_finished_trials(tmp_path):
    cfg = _config(tmp_path, keep_checkpoints=True)
    study = tmp_path / "study"
    proc = _start(cfg, study, 3, tmp_path / "first.log")
    # kill -9 once trial 0 is finished and trial 1 has written a checkpoint
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (study / "trials" / "trial-0001" / "checkpoints" / "LATEST").is_file():
            break
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t for t in _trials(study)}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    finished_log = (study / "trials" / "trial-0000" / "log.jsonl").read_bytes()

    again = _start(cfg, study, 3, tmp_path / "second.log")
    assert again.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
    after = _trials(study)
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    # trial 0 was not run again: same value, untouched run directory
    assert {t.number: t.value for t in complete}[0] == before[0].value
    assert (study / "trials" / "trial-0000" / "log.jsonl").read_bytes() == finished_log
    # trial 1 is marked interrupted; its settings ran again, resuming its own run directory
    killed = next(t for t in after if t.number == 1)
    assert killed.state == TrialState.FAIL and killed.user_attrs["interrupted"]
    retry = next(t for t in after if t.user_attrs.get("resumes") == 1)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    run1 = study / "trials" / "trial-0001"
    assert retry.user_attrs["run_dir"] == str(run1)
    events = [json.loads(line)["event"] for line in (run1 / "log.jsonl").read_text().splitlines()]
    assert "resumed" in events and _starts(run1) == 1
    assert "interrupted" in (study / "trials.md").read_text()


def test_two_workers_on_one_storage_finish_the_budget_together(tmp_path):
    cfg = _config(tmp_path)
    study = tmp_path / "study"
    procs = [_start(cfg, study, 4, tmp_path / f"w{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=400) == 0, (tmp_path / f"w{i}.log").read_text()
    trials = _trials(study)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4
    assert all(t.user_attrs.get("surplus") for t in trials if t not in finished)
    pids = {t.user_attrs["worker"]["pid"] for t in finished}
    assert pids == {p.pid for p in procs}            # both workers ran trials
    dirs = {t.user_attrs["run_dir"] for t in finished}
    assert len(dirs) == 4 and all(_starts(Path(d)) == 1 for d in dirs)
