"""``daer train`` under ``torchrun --nproc_per_node 2`` (gloo on CPU): one run directory, one
metrics file, checkpoints `daer evaluate` reads, and a resume under torchrun that completes."""
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

pytestmark = pytest.mark.slow

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _torchrun(*args: str) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m",
            "daer_core.cli.main", "train", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def config_file(tmp_path, tiny_config) -> Path:
    cfg = tiny_config()
    cfg["train"]["stages"]["relation"]["epochs"] = 3
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed beside python")
def test_two_processes_write_one_run_that_evaluates_and_resumes(tmp_path, config_file, capsys):
    run = tmp_path / "run"
    # start, and kill the whole job once stage 2 has finished an epoch (mid-run)
    job = subprocess.Popen(_torchrun(str(config_file), "--out", str(run)), env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    log = run / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if log.is_file() and '"stage": "image"' in log.read_text():
            break
        time.sleep(0.05)
    if job.poll() is None:  # torchrun passes the signal on to its workers and ends them
        job.send_signal(signal.SIGTERM)
    out = job.communicate(timeout=120)[0]
    assert (run / "checkpoints").is_dir(), out[-3000:]
    assert not (run / "metrics.json").exists(), "the job finished before it could be killed"

    resumed = subprocess.run(_torchrun("--resume", str(run)), env=_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert resumed.stdout.count("Test mAP@all") == 1  # one process reports

    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]  # one directory
    metrics = json.loads((run / "metrics.json").read_text())
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["processes"] for e in events if e["event"] == "start"] == [2]
    assert sum(e["event"] == "resumed" for e in events) == 1
    relation = sorted({e["epoch"] for e in events
                       if e["event"] == "epoch" and e["stage"] == "relation"})
    assert relation == [1, 2, 3]
    assert sum(e["event"] == "epoch" and e["stage"] == "relation" for e in events) == 3
    assert sum(e["event"] == "test" for e in events) == 1
    # the final weights are an ordinary run: `daer evaluate` reads them in one process
    from daer_core.cli.main import main
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["i2t"] == pytest.approx(metrics["i2t"])
