"""``daer benchmark`` end to end through the CLI entry point (test plugin loaded with -p)."""
from __future__ import annotations

import pytest
import yaml

import registry
from daer_core.cli.main import main


@pytest.fixture(autouse=True)
def _restore_default_plugins():
    yield
    registry.set_default_plugins(None)              # -p replaced the process-wide set


def _config(tmp_path, **extra):
    (tmp_path / "pyproject.toml").write_text("")
    cfg = {"runs": 2, "datasets": {"s": {"dataset": {"name": "synthetic-features"}}},
           "methods": {"CCA": {"name": "cca"}, "JRL": {"name": "jrl"}}, **extra}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_cli_runs_and_prints_tables(tmp_path, capsys):
    path = _config(tmp_path)
    code = main(["-p", "benchmark_test_plugin", "benchmark", str(path), "--no-progress",
                 "--set", "runs=3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "## Table 1" in out and "| JRL |" in out and "computed 6 cells, reused 0" in out
    results = tmp_path / "runs" / "benchmarks" / "bench" / "results.csv"   # default --out
    assert results.is_file() and len(results.read_text().splitlines()) == 7
    code = main(["-p", "benchmark_test_plugin", "benchmark", str(path), "--no-progress",
                 "--set", "runs=3", "--out", str(results.parent)])
    assert code == 0 and "computed 0 cells, reused 6" in capsys.readouterr().out


def test_cli_config_errors_exit_2_and_name_the_key(tmp_path, capsys):
    path = _config(tmp_path, methods={"X": {"name": "no-such-method"},
                                      "Y": {"name": "cca", "params": {"reg": -1}}})
    assert main(["-p", "benchmark_test_plugin", "benchmark", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "methods.X: unknown method 'no-such-method'" in err and "methods.Y:" in err
    assert not (tmp_path / "runs").exists()             # nothing ran
    bad = _config(tmp_path, runs=0)
    assert main(["benchmark", str(bad)]) == 2
    assert "runs" in capsys.readouterr().err
