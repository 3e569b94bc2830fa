"""Run-directory safety (issue 14, cases 1-4): one writer, a pinned config, a lost LATEST
pointer that loses nothing, and folders that are not runs left alone."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import pytest

from daer_core.cli.main import main
from daer_core.config import load_run_config
from daer_core.errors import CheckpointError, ConfigError
from daer_core.training import checkpoint as ck
from daer_core.training import run_dir as rd
from daer_core.training.api import resume_run, train_and_evaluate
from daer_core.training.trainer import Trainer
from run_faults import kill_at_epoch_call


def _events(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(
        tmp_path, tiny_config, monkeypatch):
    """Case 1: the second `daer train --out SAME` starts while the first is still writing its
    run directory (before its first checkpoint, where the old 'already holds a run' check saw
    nothing). It must fail at once, naming the owner, and leave the first run intact."""
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    run = tmp_path / "run"
    real_prepare = Trainer.prepare_run_dir
    second: dict = {}

    def prepare_then_race(self):
        report = real_prepare(self)
        if not second:
            second["started"] = True  # the second run's own prepare must not race again

            def other():
                try:
                    second["result"] = train_and_evaluate(cfg, run)
                except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                    second["error"] = exc
            t = threading.Thread(target=other)
            t.start()
            t.join()
        return report

    monkeypatch.setattr(Trainer, "prepare_run_dir", prepare_then_race)
    first = train_and_evaluate(cfg, run)
    assert "result" not in second, "two runs wrote the same folder and both succeeded"
    err = second["error"]
    assert isinstance(err, CheckpointError)
    assert "in use" in str(err) and str(os.getpid()) in str(err)
    assert [e["event"] for e in _events(run)].count("start") == 1
    assert json.loads((run / "metrics.json").read_text())["avg"] == first["avg"]
    assert not (run / rd.LOCK_NAME).exists(), "the lock is released when the run ends"


def test_a_live_lock_is_refused_and_a_dead_owners_lock_is_named_and_taken_over(
        tmp_path, tiny_config, caplog):
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    run = tmp_path / "run"
    run.mkdir()
    import socket
    lock = run / rd.LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(CheckpointError, match=f"in use.*process {os.getppid()}"):
        train_and_evaluate(cfg, run)
    assert lock.is_file(), "a live owner's lock is never removed"

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                "started": "2026-01-01T00:00:00+00:00"}))
    with caplog.at_level(logging.WARNING):
        train_and_evaluate(cfg, run)
    assert f"stale run lock left by process {dead.pid}" in caplog.text
    assert str(lock) in caplog.text
    assert not lock.exists()


def test_resume_refuses_a_damaged_config_yaml(tmp_path, tiny_config, monkeypatch):
    """Case 2: config.yaml cut before `train:` still parses (defaults fill the rest); resuming
    with it would silently train another run. The checkpoint's config digest catches it."""
    run = tmp_path / "run"
    restore = kill_at_epoch_call(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_run_config(tiny_config()), run)
    restore()
    cfg_file = run / "config.yaml"
    text = cfg_file.read_text()
    cfg_file.write_text(text[:text.index("\ntrain:") + 1])
    with pytest.raises(CheckpointError, match="config.yaml: does not match") as info:
        resume_run(run)
    assert "config_yaml" in str(info.value)
    # the original is recoverable from the checkpoint, and then the run resumes
    state = json.loads((run / "checkpoints" / ck.latest_tag(run) / "state.json").read_text())
    cfg_file.write_text(state["config_yaml"])
    assert 0 <= resume_run(run)["avg"] <= 1


def test_a_lost_latest_pointer_resumes_from_the_newest_checkpoint_and_keeps_the_log(
        tmp_path, tiny_config, monkeypatch, caplog):
    """Case 3: LATEST gone while checkpoints exist. The run continues from the newest complete
    checkpoint; nothing of log.jsonl is deleted."""
    run = tmp_path / "run"
    restore = kill_at_epoch_call(monkeypatch, 4)  # during stage 2, epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    restore()
    newest = ck.latest_tag(run)
    assert newest == "image-0001"
    before = (run / "log.jsonl").read_text()
    (run / "checkpoints" / "LATEST").unlink()
    with caplog.at_level(logging.WARNING):
        resume_run(run)
    assert "LATEST is missing" in caplog.text and newest in caplog.text
    assert (run / "log.jsonl").read_text().startswith(before), "log history was lost"
    events = _events(run)
    assert [e["event"] for e in events].count("start") == 1
    resumed = [e for e in events if e["event"] == "resumed"]
    assert resumed and resumed[0]["checkpoint"] == newest
    # the epochs trained before the kill are not trained again
    text_epochs = [e for e in events if e["event"] == "epoch" and e["stage"] == "text"]
    assert len(text_epochs) == 2


def test_a_new_run_with_checkpoints_but_no_latest_is_still_refused(tmp_path, tiny_config,
                                                                    monkeypatch):
    run = tmp_path / "run"
    restore = kill_at_epoch_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_run_config(tiny_config()), run)
    restore()
    (run / "checkpoints" / "LATEST").unlink()
    before = (run / "log.jsonl").read_text()
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_and_evaluate(load_run_config(tiny_config()), run)
    assert (run / "log.jsonl").read_text() == before


def test_out_pointing_at_a_folder_that_is_not_a_run_is_refused(tmp_path, tiny_config, capsys):
    """Case 4: a folder with the user's own config.yaml is never overwritten."""
    mine = tmp_path / "experiments"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: notes\n")
    (mine / "results.txt").write_text("keep me\n")
    with pytest.raises(ConfigError, match="not a daer run directory.*config.yaml"):
        train_and_evaluate(load_run_config(tiny_config()), mine)
    assert (mine / "config.yaml").read_text() == "my: notes\n"
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "results.txt"]
    code = main(["train", "--preset", "daer", "--dataset", "shapes", "--out", str(mine)])
    assert code == 2
    err = capsys.readouterr().err
    assert "not a daer run directory" in err and "Traceback" not in err
    assert (mine / "config.yaml").read_text() == "my: notes\n"


def test_a_torn_last_log_line_is_cut_off_and_history_kept(tmp_path, tiny_config, monkeypatch):
    """Case 8 (torn log): a kill -9 in the middle of a log write leaves half a line; the next
    start cuts it off and records the repair, so every line is one JSON object again."""
    run = tmp_path / "run"
    restore = kill_at_epoch_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    restore()
    complete = (run / "log.jsonl").read_text()
    torn = '{"time": 1, "event": "ep'
    with open(run / "log.jsonl", "a") as fh:
        fh.write(torn)
    resume_run(run)
    text = (run / "log.jsonl").read_text()
    assert text.startswith(complete)
    events = [json.loads(line) for line in text.splitlines()]  # every line parses
    assert any(e["event"] == "log_repaired" and e["bytes_removed"] == len(torn) for e in events)


def test_a_missing_checkpoint_file_is_named(tmp_path, tiny_config):
    """Case 8: the message used to say "None is missing"."""
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    (run / "checkpoints" / "final" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing") as info:
        ck.read_checkpoint(run, "final")
    assert "None" not in str(info.value)
