"""The benchmark runner: tables, resumability, config handling and the DAER code path."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import yaml

import benchmark_test_plugin as plug
import registry
from daer_core.benchmark import cell_hash, load_benchmark_config, run_benchmark
from daer_core.benchmark.cells import CellError
from daer_core.benchmark.stats import runs_needed, smallest_exact_p, wilcoxon_paired
from daer_core.errors import ConfigError


@pytest.fixture(scope="module")
def reg():
    return registry.load_plugins(load=["benchmark_test_plugin"]).registry


@pytest.fixture(autouse=True)
def _reset_state():
    plug.STATE.update(fits=0, fail_at=None, extractor_fits=0)


def write_config(tmp_path: Path, **overrides) -> Path:
    cfg = {
        "name": "tiny", "runs": 3, "seed": 0,
        "datasets": {"synth": {"label": "Synth",
                               "dataset": {"name": "synthetic-features", "params": {"n": 160}}}},
        "methods": {"Counting": {"name": "counting-cca"},
                    "MvDA": {"name": "mvda-vc"}},
    }
    cfg.update(overrides)
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    path = tmp_path / "configs" / "tiny.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_benchmark_writes_csv_tables_and_figure(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path))
    out = tmp_path / "out"
    outcome = run_benchmark(config, out, registry=reg, progress=False)
    rows = read_rows(out)
    assert len(rows) == 6 and plug.STATE["fits"] == 3
    assert {r["method"] for r in rows} == {"Counting", "MvDA"}
    for r in rows:
        assert 0 < float(r["i2t"]) <= 1 and float(r["fit_seconds"]) >= 0
        assert float(r["peak_memory_mb"]) > 0 and int(r["n_train"]) == 101   # 90% of 112
    md = (out / "results.md").read_text()
    assert "## Table 1" in md and "## Table 2" in md and "## Table 3" in md
    assert "Reference: **MvDA**" not in md and "Reference: **Counting**" in md
    assert "0.05 / 1" in md and "Too few runs" in md and "at least 6 runs" in md
    assert "No DAER variants" in md
    assert outcome.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_benchmark_resumes_without_recomputing(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, runs=4))
    out = tmp_path / "out"
    plug.STATE["fail_at"] = 2                        # the 2nd Counting cell crashes
    with pytest.raises(CellError, match="Counting on synth, run 1.*simulated crash"):
        run_benchmark(config, out, registry=reg, progress=False)
    first = read_rows(out)
    assert [(r["method"], r["run"]) for r in first] == [("Counting", "0")]
    plug.STATE.update(fits=0, fail_at=None)
    outcome = run_benchmark(config, out, registry=reg, progress=False)
    assert plug.STATE["fits"] == 3                   # runs 1, 2, 3 only
    assert ("Counting", "synth", 0) in outcome.skipped
    rows = read_rows(out)
    assert len(rows) == 8
    assert rows[0]["finished_at"] == first[0]["finished_at"]
    plug.STATE["fits"] = 0
    again = run_benchmark(config, out, registry=reg, progress=False)
    assert plug.STATE["fits"] == 0 and not again.computed and len(again.skipped) == 8


def test_partial_results_file_recomputes_only_the_damaged_cell(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, methods={"Counting": {
        "name": "counting-cca"}}))
    out = tmp_path / "out"
    run_benchmark(config, out, registry=reg, progress=False)
    text = (out / "results.csv").read_text().splitlines()
    (out / "results.csv").write_text("\n".join(text[:-1] + [text[-1][:25]]) + "\n")
    plug.STATE["fits"] = 0
    outcome = run_benchmark(config, out, registry=reg, progress=False)
    assert plug.STATE["fits"] == 1 and outcome.computed == [("Counting", "synth", 2)]
    assert len(read_rows(out)) == 3


def test_rows_with_blank_later_columns_load_as_written_before_them():
    """A results.csv merged from files of two versions leaves the later columns blank on the
    older rows: they read as those rows did (category protocol, no tuning), not as damage."""
    from daer_core.benchmark.results import COLUMNS, REQUIRED_COLUMNS, _parse
    row = {c: "" for c in COLUMNS}
    row.update(method="CCA", dataset="synth", run="0", seed="0", kind="baseline", i2t="0.3",
               t2i="0.2", avg="0.25", chance="0.1", fit_seconds="1", peak_memory_mb="2",
               n_train="10", n_eval="5", config_hash="abc", finished_at="2026-12-03T00:00:00")
    assert all(row[c] for c in REQUIRED_COLUMNS)
    cell = _parse(row)
    assert (cell.protocol, cell.tune_trials, cell.avg) == ("category", 0, 0.25)
    row["protocol"] = "sideways"                       # a value that is there is still checked
    with pytest.raises(ValueError, match="sideways"):
        _parse(row)


def test_changed_params_recompute_only_that_method(tmp_path, reg, caplog):
    path = write_config(tmp_path)
    config, _ = load_benchmark_config(path)
    out = tmp_path / "out"
    run_benchmark(config, out, registry=reg, progress=False)
    changed, _ = load_benchmark_config(path, ["methods.MvDA.params.reg=0.1"])
    assert cell_hash(changed, "MvDA", "synth", 0) != cell_hash(config, "MvDA", "synth", 0)
    plug.STATE["fits"] = 0
    with caplog.at_level(logging.WARNING):
        outcome = run_benchmark(changed, out, registry=reg, progress=False)
    assert plug.STATE["fits"] == 0
    assert sorted(outcome.computed) == [("MvDA", "synth", r) for r in range(3)]
    # replacing saved rows is said, not silent (issue 14)
    assert sorted(outcome.replaced) == sorted(outcome.computed)
    assert "3 cell(s)" in caplog.text and "their rows replaced" in caplog.text
    assert "methods: MvDA" in caplog.text


def test_runs_differ_by_resample_and_seed_reaches_seeded_methods(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, methods={
        "KCCA": {"name": "kcca", "params": {"rank": 20}}}))
    out = tmp_path / "out"
    run_benchmark(config, out, registry=reg, progress=False)
    rows = read_rows(out)
    assert len({r["i2t"] for r in rows}) == 3        # three different resamples
    assert [r["seed"] for r in rows] == ["0", "1", "2"]


def test_relative_paths_resolve_against_project_root_and_set_overrides(tmp_path):
    path = write_config(tmp_path, datasets={"synth": {
        "dataset": {"name": "synthetic-features", "params": {"root": "../data/x"}},
        "daer_dataset": {"name": "wikipedia", "params": {"root": "data/wiki", "texts_dir": "t"}},
        "paths": ["daer_dataset.params.texts_dir"]}})
    config, root = load_benchmark_config(path)
    assert root == tmp_path.resolve()
    entry = config.datasets["synth"]
    assert entry.dataset.params["root"] == str((tmp_path / "../data/x").resolve())
    assert entry.daer_dataset.params["root"] == str(tmp_path.resolve() / "data/wiki")
    assert entry.daer_dataset.params["texts_dir"] == str(tmp_path.resolve() / "t")
    over, _ = load_benchmark_config(path, ["datasets.synth.dataset.params.root=/abs/x",
                                           "runs=7"])
    assert over.datasets["synth"].dataset.params["root"] == "/abs/x" and over.runs == 7


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"methods\.Bad.*either `name`"):
        load_benchmark_config(write_config(tmp_path, methods={"Bad": {
            "name": "cca", "daer": {"preset": "daer"}}}))
    with pytest.raises(ConfigError, match="reference 'Nope'"):
        load_benchmark_config(write_config(tmp_path, reference="Nope"))
    with pytest.raises(ConfigError, match="runs.*unknown key|rnus.*unknown key"):
        load_benchmark_config(write_config(tmp_path, rnus=3))


def test_feature_extractors_on_raw_pairs_are_cached(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, runs=2, datasets={"pairs": {
        "dataset": {"name": "synthetic-pairs", "params": {"n": 120}},
        "image_features": {"name": "mean-colour"},
        "text_features": {"name": "tfidf", "params": {"min_df": 1}}}},
        methods={"CCA": {"name": "cca"}}))
    out = tmp_path / "out"
    run_benchmark(config, out, registry=reg, progress=False)
    rows = read_rows(out)
    assert plug.STATE["extractor_fits"] == 1 and len(rows) == 2
    assert float(rows[0]["avg"]) > float(rows[0]["chance"]) + 0.3   # colour words match pixels
    assert len(list((out / "cache").glob("features-pairs-*.npz"))) == 1
    (out / "results.csv").unlink()
    run_benchmark(config, out, registry=reg, progress=False)
    assert plug.STATE["extractor_fits"] == 1         # features came from the cache


def test_precomputed_on_a_raw_only_dataset_is_a_config_error(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, runs=1, datasets={"pairs": {
        "dataset": {"name": "synthetic-pairs"}}}))
    with pytest.raises(CellError, match="no pre-extracted features"):
        run_benchmark(config, tmp_path / "out", registry=reg, progress=False)


def test_daer_methods_go_through_the_training_api(tmp_path, reg):
    calls = []
    cut = {"done": False}

    def fake_train(cfg, out_dir, resume=False):
        calls.append((cfg, Path(out_dir), resume))
        (Path(out_dir) / "checkpoints").mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "checkpoints" / "LATEST").write_text("x")
        if len(calls) == 2 and not cut["done"]:
            cut["done"] = True
            raise RuntimeError("power cut")
        base = 0.5 if cfg["preset"] == "daer" else 0.4
        return {"i2t": base + 0.01 * cfg["seed"], "t2i": base, "avg": base, "chance": 0.1}

    config, _ = load_benchmark_config(write_config(tmp_path, runs=2, methods={
        "DAER-C": {"daer": {"preset": "daer-c"}}, "DAER": {"daer": {"preset": "daer"}},
        "CCA": {"name": "cca"}}))
    out = tmp_path / "out"
    with pytest.raises(CellError, match="power cut"):
        run_benchmark(config, out, registry=reg, daer_train_fn=fake_train, progress=False)
    outcome = run_benchmark(config, out, registry=reg, daer_train_fn=fake_train, progress=False)
    cfg, cell_dir, resume = calls[2]
    assert resume is True and cell_dir.parent == out / "daer" / "DAER-C" / "synth"
    assert cell_dir.name.startswith("run-1-")
    assert cfg["seed"] == 1 and cfg["dataset"]["name"] == "synthetic-features"
    assert len(calls) == 5 and len(read_rows(out)) == 6
    md = outcome.markdown
    assert "Reference: **DAER-C**" in md                      # first DAER method by default
    t3 = md.split("## Table 3")[1].split("## Cost")[0]
    assert "| DAER-C |" in t3 and "| DAER |" in t3 and "| CCA |" not in t3

    # a changed DAER config is a new training run in a new folder, never a resume of the old
    changed, _ = load_benchmark_config(write_config(tmp_path, runs=2, methods={
        "DAER-C": {"daer": {"preset": "daer-c", "train": {"bf16": True}}},
        "DAER": {"daer": {"preset": "daer"}}, "CCA": {"name": "cca"}}))
    calls.clear()
    run_benchmark(changed, out, registry=reg, daer_train_fn=fake_train, progress=False)
    assert [(c[0]["preset"], c[2]) for c in calls] == [("daer-c", False), ("daer-c", False)]
    assert all(c[1].parent == cell_dir.parent and c[1] != cell_dir for c in calls)


def test_daer_methods_are_refused_in_a_validation_benchmark(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, runs=1, methods={
        "DAER": {"daer": {"preset": "daer"}}, "CCA": {"name": "cca"}}))
    config.eval_split = "val"
    with pytest.raises(ConfigError, match="eval_split: val"):
        run_benchmark(config, tmp_path / "out", registry=reg, progress=False)


def test_signed_rank_floor_and_edge_cases():
    assert smallest_exact_p(10) == pytest.approx(0.001953125)
    assert runs_needed(0.05 / 8) == 9
    better = {r: 0.5 + 0.01 * r for r in range(10)}
    worse = {r: 0.4 + 0.001 * r for r in range(10)}
    assert wilcoxon_paired(better, worse).p == pytest.approx(0.001953125)
    assert wilcoxon_paired(better, dict(better)).p is None
    assert wilcoxon_paired(better, {}).note == "no paired runs"


def test_component_problems_are_reported_before_any_cell_runs(tmp_path, reg):
    config, _ = load_benchmark_config(write_config(tmp_path, methods={
        "Counting": {"name": "counting-cca"},
        "DAER": {"daer": {"preset": "no-such-preset"}},
        "KCCA": {"name": "kcca", "params": {"rank": "many"}}}))
    with pytest.raises(ConfigError) as info:
        run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    assert "methods.DAER.daer" in str(info.value) and "no-such-preset" in str(info.value)
    assert "methods.KCCA" in str(info.value) and "rank" in str(info.value)
    assert plug.STATE["fits"] == 0 and not (tmp_path / "out" / "results.csv").exists()


def test_trained_cells_train_on_the_rows_the_baselines_of_the_same_run_fit_on(tmp_path):
    """Paired runs: in run r a trained cell's dataset carves its validation split with run
    r's seed and 1 - fraction, so it trains on exactly the baselines' subsample of run r and
    validates on the rows they leave out (Table 2's signed-rank test pairs run with run)."""
    import numpy as np
    import scipy.io

    from daer_core.benchmark.cells import daer_run_config
    from daer_core.benchmark.config import DatasetEntry, MethodEntry, ResampleConfig
    from daer_core.benchmark.data import resample_indices
    from plugins.datasets.features import FeaturesParams, load_features

    n = 53
    rng = np.random.default_rng(0)
    scipy.io.savemat(tmp_path / "f.mat", {
        "train_img": np.arange(n)[:, None] * np.ones((1, 4)), "train_txt": rng.random((n, 3)),
        "train_lab": np.arange(n) % 3, "test_img": rng.random((6, 4)),
        "test_txt": rng.random((6, 3)), "test_lab": np.arange(6) % 3})
    dataset = DatasetEntry(dataset={"name": "features", "params": {"root": str(tmp_path)}},
                           daer_dataset={"name": "features",
                                         "params": {"root": str(tmp_path), "val_fraction": 0.1}})
    method = MethodEntry(daer={"preset": "daer-features"})
    policy = ResampleConfig(mode="subsample", fraction=0.9)
    seen = []
    for seed in (0, 1, 2):
        rows = resample_indices(n, policy, seed)
        params = daer_run_config(method, dataset, seed, policy)["dataset"]["params"]
        ds = load_features(FeaturesParams(**params))
        trained = ds.features("train").image[:, 0].astype(int).tolist()
        validated = ds.features("val").image[:, 0].astype(int).tolist()
        assert trained == rows.tolist()
        assert sorted(trained + validated) == list(range(n))
        seen.append(tuple(trained))
    assert len(set(seen)) == 3, "each run draws its own subsample"

    with pytest.raises(ConfigError, match=r"daer_dataset\.params\.val_fraction is 0\.2"):
        daer_run_config(method, DatasetEntry(
            dataset=dataset.dataset, daer_dataset={"name": "features", "params": {
                "root": str(tmp_path), "val_fraction": 0.2}}), 0, policy)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_a_trained_cells_peak_memory_is_its_own_even_below_an_earlier_high_water_mark():
    """The cost column of trained cells: the resident-set growth during the cell, sampled, so
    a cell that follows a bigger one does not report 0. (Fresh anonymous mappings, so the
    allocator cannot serve the block from memory the process already holds.)"""
    import mmap
    import time

    from daer_core.benchmark.cells import measure_process

    def touch(mib: int) -> mmap.mmap:
        block = mmap.mmap(-1, mib * 2 ** 20)
        block.write(b"x" * (mib * 2 ** 20))
        return block

    touch(48).close()  # 48 MiB resident once: the process's high-water mark
    with measure_process() as m:
        block = touch(32)  # 32 MiB resident inside the cell
        time.sleep(0.1)
        block.close()
    assert 24 <= m["peak_mb"] <= 48, m
    with measure_process() as m:
        time.sleep(0.05)
    assert m["peak_mb"] < 8, m


def test_report_only_writes_the_tables_from_finished_cells_and_computes_nothing(tmp_path, reg):
    """E.g. cells computed in separate runs: the report shows what is there, with n."""
    config, _ = load_benchmark_config(write_config(tmp_path, runs=3))
    out = tmp_path / "out"
    short, _ = load_benchmark_config(write_config(tmp_path, runs=2))
    run_benchmark(short, out, registry=reg, progress=False)     # runs 0-1 of both methods
    plug.STATE["fits"] = 0
    outcome = run_benchmark(config, out, registry=reg, progress=False, report_only=True)
    assert plug.STATE["fits"] == 0 and not outcome.computed
    assert sorted(outcome.missing) == [("Counting", "synth", 2), ("MvDA", "synth", 2)]
    md = (out / "results.md").read_text()
    assert "(n=2)" in md and len(read_rows(out)) == 4
