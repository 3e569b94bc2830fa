"""Equal tuning budgets in ``daer benchmark``: searched on each run's validation rows."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

import benchmark_test_plugin as plug
import registry
from daer_core.benchmark import cell_hash, load_benchmark_config, run_benchmark
from daer_core.benchmark.config import ResampleConfig, TuneBudget
from daer_core.benchmark.tuning import validation_rows
from daer_core.errors import ConfigError


@pytest.fixture(scope="module")
def reg():
    return registry.load_plugins(load=["benchmark_test_plugin"]).registry


def _config(tmp_path, **over):
    cfg = {"name": "tuned", "runs": 2, "seed": 0,
           "datasets": {"synth": {"dataset": {"name": "synthetic-features", "params": {"n": 160}}}},
           "methods": {"Counting": {"name": "counting-cca",
                                    "space": {"reg": {"low": 1.0e-4, "high": 10.0, "log": True}}},
                       "MvDA": {"name": "mvda-vc"}},
           "tune": {"trials": 4}}
    cfg.update(over)
    (tmp_path / "pyproject.toml").write_text("")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_benchmark_config(path)[0]


def test_validation_rows_are_what_the_run_leaves_out():
    rows = np.array([0, 2, 3, 5, 6, 7, 9])
    assert validation_rows(10, rows, ResampleConfig()).tolist() == [1, 4, 8]
    with pytest.raises(ConfigError, match="resample: none leaves none"):
        validation_rows(10, np.arange(10), ResampleConfig(mode="none"))


def test_a_baseline_is_searched_on_left_out_training_rows_only(tmp_path, reg, monkeypatch):
    """Every fit during the search sees run rows, every ranking the left-out rows: the
    test features reach only the final fit's ranking, once per cell."""
    seen: list[tuple[str, int]] = []
    real_fit = plug.CountingCCA.fit
    real_img = plug.CountingCCA.transform_image

    def fit(self, img, txt, labels=None):
        seen.append(("fit", len(img)))
        return real_fit(self, img, txt, labels)

    def transform_image(self, img):
        seen.append(("rank", len(img)))
        return real_img(self, img)

    monkeypatch.setattr(plug.CountingCCA, "fit", fit)
    monkeypatch.setattr(plug.CountingCCA, "transform_image", transform_image)
    plug.STATE.update(fits=0, fail_at=None)
    config = _config(tmp_path, runs=1)
    outcome = run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    n_train, n_test = 112, 48                 # synthetic-features: 70 % of 160 to train
    fits = [n for kind, n in seen if kind == "fit"]
    ranks = [n for kind, n in seen if kind == "rank"]
    assert fits == [101] * 5                  # 4 trials + the final fit, on the run's rows
    assert ranks == [n_train - 101] * 4 + [n_test]   # validation rows, then the test split
    rows = {r["method"]: r for r in csv.DictReader(outcome.results_csv.open())}
    assert int(rows["Counting"]["tune_trials"]) == 4
    assert float(rows["Counting"]["tune_seconds"]) > 0
    assert "reg" in json.loads(rows["Counting"]["tuned_params"])
    assert int(rows["MvDA"]["tune_trials"]) == 0     # no space: nothing to search
    md = outcome.markdown
    assert "**Tuning:**" in md and "4 trials per run for Counting" in md
    assert "Not tuned (no budget or no settings to search): MvDA" in md
    assert "synth: trials" in md.split("## Cost")[1]


def test_the_first_trial_is_the_methods_own_setting(tmp_path, reg, monkeypatch):
    regs = []
    real_init = plug.CountingCCA.__init__

    def init(self, reg=1e-3, seed=0):
        regs.append(reg)
        real_init(self, reg=reg, seed=seed)

    monkeypatch.setattr(plug.CountingCCA, "__init__", init)
    config = _config(tmp_path, runs=1, methods={"Counting": {
        "name": "counting-cca", "params": {"reg": 0.5},
        "space": {"reg": {"low": 1.0e-4, "high": 10.0, "log": True}}}})
    run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    assert regs[0] == 0.5 and len(set(regs[:4])) == 4


def test_the_budget_is_part_of_a_cells_identity(tmp_path):
    tuned = _config(tmp_path)
    untuned = _config(tmp_path, tune=None)
    assert cell_hash(tuned, "Counting", "synth", 0) != cell_hash(untuned, "Counting", "synth", 0)
    assert tuned.budget("MvDA") == TuneBudget(trials=4)
    own = _config(tmp_path, methods={"Counting": {"name": "counting-cca",
                                                  "tune": {"trials": 0}}})
    assert own.budget("Counting") is None


def test_a_space_on_a_daer_method_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="searches its run config's tune.space"):
        _config(tmp_path, methods={"D": {"daer": {"preset": "daer"},
                                         "space": {"x": {"low": 0, "high": 1}}}})


def test_method_restricts_what_is_computed_not_what_is_reported(tmp_path, reg):
    config = _config(tmp_path, runs=1, tune=None)
    out = tmp_path / "out"
    first = run_benchmark(config, out, registry=reg, progress=False, methods=["MvDA"])
    assert first.computed == [("MvDA", "synth", 0)]
    second = run_benchmark(config, out, registry=reg, progress=False, methods=["Counting"])
    assert second.computed == [("Counting", "synth", 0)]
    assert "| Counting |" in second.markdown and "| MvDA |" in second.markdown
    with pytest.raises(ConfigError, match="--method 'Nope': not a method"):
        run_benchmark(config, out, registry=reg, progress=False, methods=["Nope"])


def test_a_users_out_folder_is_refused_untouched(tmp_path, reg):
    config = _config(tmp_path, runs=1, tune=None)
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("results.csv", "results.md", "benchmark.yaml"):
        (mine / name).write_text(f"my own {name}")
    with pytest.raises(ConfigError, match="not a daer benchmark folder"):
        run_benchmark(config, mine, registry=reg, progress=False)
    assert {p.name: p.read_text() for p in mine.iterdir()} == {
        n: f"my own {n}" for n in ("results.csv", "results.md", "benchmark.yaml")}
    # daer's own folder (marker, or a results.csv of daer's from before the marker) resumes
    out = tmp_path / "out"
    run_benchmark(config, out, registry=reg, progress=False)
    (out / ".daer-benchmark.json").unlink()
    again = run_benchmark(config, out, registry=reg, progress=False)
    assert again.computed == [] and len(again.skipped) == 2
