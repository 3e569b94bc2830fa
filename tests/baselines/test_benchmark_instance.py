"""``daer benchmark`` under the instance-level protocol (Recall@K, several captions per image):
the result columns, the Recall@K tables with first stages and chance, old results files,
and baselines refused on instance-level data."""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import benchmark_test_plugin as plug
import registry
from daer_core.benchmark import load_benchmark_config, run_benchmark
from daer_core.benchmark.cells import CellError, check_daer_metrics
from daer_core.benchmark.results import (COLUMNS, REQUIRED_COLUMNS, ResultsTable,
                                         metric_columns)
from daer_core.errors import ConfigError
from daer_core.evaluation.instance import recall_report

#: the header of results.csv before the instance columns existed
OLD_COLUMNS = REQUIRED_COLUMNS + ["tune_trials", "tune_seconds", "tuned_params"]
SHAPES = {"name": "shapes", "params": {"num_pairs": 24, "captions_per_image": 3,
                                       "num_classes": 4, "image_size": 32, "seed": 1}}


@pytest.fixture(scope="module")
def reg():
    return registry.load_plugins(load=["benchmark_test_plugin"]).registry


@pytest.fixture(autouse=True)
def _reset_state():
    plug.STATE.update(fits=0, fail_at=None, extractor_fits=0)


def write_config(tmp_path: Path, cfg: dict) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def instance_metrics(seed: int, rerank_k: int = 0, classes: bool = False) -> dict:
    """A trainer's instance-level metrics from seeded random scores (12 images x 3 captions):
    the shape ``write_evaluation`` returns, without the class view unless ``classes``."""
    rng = np.random.default_rng(seed)
    owner = np.repeat(np.arange(12), 3)
    first = rng.normal(size=(36, 12)) + 2.0 * (owner[:, None] == np.arange(12))
    final = first + 1.0 * (owner[:, None] == np.arange(12))   # re-ranking helps here
    out = {"protocol": "instance", "pairs": 36,
           "instance": recall_report(final if rerank_k else first, owner)}
    if rerank_k:
        out.update(rerank_k=rerank_k, instance_first_stage=recall_report(first, owner))
    if classes:
        out.update(i2t=0.4, t2i=0.5, avg=0.45, chance=0.25)
    return out


def fake_train(cfg: dict, out_dir, resume: bool = False) -> dict:
    """Stands in for ``train_and_evaluate``: a preset with ``rerank`` in its name re-ranks."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return instance_metrics(cfg["seed"], rerank_k=8 if "rerank" in cfg["preset"] else 0)


def instance_benchmark(tmp_path: Path, **extra) -> dict:
    return {"name": "inst", "runs": 2, "resample": {"mode": "none"},
            "datasets": {"shapes": {"dataset": SHAPES}},
            "methods": {"contrastive": {"daer": {"preset": "contrastive-shapes"}},
                        "rerank": {"daer": {"preset": "daer-rerank-shapes"}}}, **extra}


def test_instance_cells_fill_the_recall_columns_and_tables(tmp_path, reg, caplog):
    config, _ = load_benchmark_config(write_config(tmp_path, instance_benchmark(tmp_path)))
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="daer_core.benchmark.runner"):
        outcome = run_benchmark(config, out, registry=reg, daer_train_fn=fake_train,
                                progress=False)
    rows = {(r["method"], int(r["run"])): r for r in read_rows(out)}
    assert list(read_rows(out)[0]) == COLUMNS and len(rows) == 4
    for (method, run), row in rows.items():
        expected = metric_columns(fake_train({"seed": run, "preset": config.methods[
            method].daer["preset"]}, tmp_path / "x"))
        assert row["protocol"] == "instance" and int(row["n_images"]) == 12
        assert float(row["rsum"]) == pytest.approx(expected["rsum"], abs=1e-4)
        assert float(row["t2i_r1"]) == pytest.approx(expected["t2i_r1"], abs=1e-6)
        assert float(row["i2t_medr"]) >= 1 and int(row["n_eval"]) == 36
        # no classes: the mAP columns are empty, not zero
        assert row["i2t"] == row["avg"] == row["chance"] == ""
        assert float(row["chance_rsum"]) == pytest.approx(expected["chance_rsum"], abs=1e-4)
    assert rows[("rerank", 0)]["rerank_k"] == "8"
    assert float(rows[("rerank", 0)]["first_stage_rsum"]) < float(rows[("rerank", 0)]["rsum"])
    assert rows[("contrastive", 0)]["rerank_k"] == "0"
    assert rows[("contrastive", 0)]["first_stage_rsum"] == ""
    assert "rsum" in caplog.text and "first stage rsum" in caplog.text

    md = outcome.markdown
    assert md == (out / "results.md").read_text()
    table = md.split("### shapes")[1].split("###")[0]
    assert "12 images, 36 captions" in table
    names = [line.split("|")[1].strip() for line in table.splitlines()
             if line.startswith("| ") and "---" not in line][1:]
    assert names == ["contrastive", "rerank", "rerank (first stage)", "chance"]
    chance = next(line for line in table.splitlines() if line.startswith("| chance"))
    assert f"{float(rows[('rerank', 0)]['chance_rsum']):.1f}" in chance
    assert "### Re-ranking against its first stage" in md and "| 2 / 2 |" in md
    assert "## Table 1" not in md and "### Class view" not in md   # no category cells
    assert [f.name for f in outcome.figures] == ["rsum_bars.png"]
    assert outcome.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumable like category cells: the rows read back as they were written
    again = run_benchmark(config, out, registry=reg, daer_train_fn=fake_train,
                          progress=False)
    assert not again.computed and again.markdown == md


def test_instance_cells_with_classes_keep_the_class_view(tmp_path, reg):
    def train(cfg, out_dir, resume=False):
        return instance_metrics(cfg["seed"], classes=True)
    cfg = instance_benchmark(tmp_path)
    del cfg["methods"]["rerank"]
    config, _ = load_benchmark_config(write_config(tmp_path, cfg))
    outcome = run_benchmark(config, tmp_path / "out", registry=reg, daer_train_fn=train,
                            progress=False)
    row = read_rows(tmp_path / "out")[0]
    assert float(row["avg"]) == pytest.approx(0.45) and row["protocol"] == "instance"
    assert "### Class view" in outcome.markdown and "Re-ranking" not in outcome.markdown


def test_a_benchmark_of_both_protocols_keeps_tables_1_to_3_for_its_category_cells(
        tmp_path, reg):
    def train(cfg, out_dir, resume=False):
        if cfg["dataset"]["name"] == "shapes":
            return fake_train(cfg, out_dir)
        return {"i2t": 0.5 + 0.01 * cfg["seed"], "t2i": 0.4, "avg": 0.45, "chance": 0.2}
    cfg = instance_benchmark(tmp_path)
    cfg["datasets"]["synth"] = {"label": "Synth",
                                "dataset": {"name": "synthetic-features"}}
    config, _ = load_benchmark_config(write_config(tmp_path, cfg))
    outcome = run_benchmark(config, tmp_path / "out", registry=reg, daer_train_fn=train,
                            progress=False)
    md = outcome.markdown
    protocols = {(r["dataset"], r["protocol"]) for r in read_rows(tmp_path / "out")}
    assert protocols == {("shapes", "instance"), ("synth", "category")}
    table1 = md.split("## Table 1")[1].split("## Table 2")[0]
    assert "Synth" in table1 and "shapes" not in table1          # category cells only
    assert "### Synth" not in md and "### shapes" in md           # Recall@K: instance only
    assert "Tables 1–3 cover the category-level cells" in md
    assert [f.name for f in outcome.figures] == ["map_bars.png", "rsum_bars.png"]


def test_a_results_file_from_before_the_instance_columns_still_loads(tmp_path, reg):
    cfg = {"runs": 2, "datasets": {"synth": {"dataset": {"name": "synthetic-features"}}},
           "methods": {"Counting": {"name": "counting-cca"}}}
    config, _ = load_benchmark_config(write_config(tmp_path, cfg))
    out = tmp_path / "out"
    first = run_benchmark(config, out, registry=reg, progress=False)
    rows = read_rows(out)
    with (out / "results.csv").open("w", newline="") as fh:   # the old header and rows
        writer = csv.DictWriter(fh, fieldnames=OLD_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / ".daer-benchmark.json").unlink()  # an old folder: recognised by its header
    table = ResultsTable(out / "results.csv")
    assert table.skipped_lines == 0 and len(table.rows) == 2
    cell = next(iter(table.rows.values()))
    assert cell.protocol == "category" and math.isnan(cell.rsum) and cell.rerank_k == 0
    plug.STATE["fits"] = 0
    again = run_benchmark(config, out, registry=reg, progress=False)
    assert plug.STATE["fits"] == 0 and not again.computed and len(again.skipped) == 2
    tables = [md.split("## Table 1")[1] for md in (first.markdown, again.markdown)]
    assert tables[0] == tables[1]                     # the same figures, read back
    assert list(read_rows(out)[0]) == OLD_COLUMNS    # nothing computed: left as it was


def test_instance_only_metrics_are_accepted_and_incomplete_ones_name_what_is_missing():
    check_daer_metrics(instance_metrics(0))                 # no category keys: fine
    check_daer_metrics(instance_metrics(0, rerank_k=4))
    with pytest.raises(CellError, match="lack 'avg'"):
        check_daer_metrics({"i2t": 0.1, "t2i": 0.1, "chance": 0.1})
    with pytest.raises(CellError, match="Recall@K block"):
        check_daer_metrics({"protocol": "instance", "i2t": 0.1})
    broken = instance_metrics(0, rerank_k=4)
    del broken["instance_first_stage"]
    with pytest.raises(CellError, match="instance_first_stage"):
        check_daer_metrics(broken)
    cols = metric_columns(instance_metrics(0, rerank_k=4))
    chance = instance_metrics(0)["instance"]["chance"]
    assert cols["chance_rsum"] == pytest.approx(100 * sum(
        chance[d][f"r@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))
    assert math.isnan(cols["avg"]) and cols["rerank_k"] == 4
    assert metric_columns({"i2t": 0.5, "t2i": 0.4, "avg": 0.45, "chance": 0.1})[
        "protocol"] == "category"


def test_baselines_are_refused_on_instance_level_data(tmp_path, reg):
    # before any cell runs, when a trained method of the dataset says instance
    cfg = instance_benchmark(tmp_path)
    cfg["methods"] = {"CCA": {"name": "cca"}, "contrastive": {"daer": {
        "preset": "contrastive-shapes", "evaluate": {"protocol": "instance"}}}}
    config, _ = load_benchmark_config(write_config(tmp_path, cfg))
    with pytest.raises(ConfigError, match=r"datasets\.shapes: methods\.contrastive.*"
                                          r"feature-level category methods"):
        run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    # otherwise when the baseline cell reads the data (several captions per image)
    cfg["methods"] = {"CCA": {"name": "cca"}}
    cfg["datasets"]["shapes"].update(image_features={"name": "mean-colour"},
                                     text_features={"name": "tfidf",
                                                    "params": {"min_df": 1}})
    config, _ = load_benchmark_config(write_config(tmp_path, cfg))
    with pytest.raises(CellError, match="several captions per image.*remove the baseline"):
        run_benchmark(config, tmp_path / "out2", registry=reg, progress=False)
    assert plug.STATE["extractor_fits"] == 0


@pytest.mark.slow
def test_a_real_instance_benchmark_with_a_reranked_method(tmp_path):
    """Two tiny trained methods, one re-ranked, two runs, through the real training API."""
    reg = registry.get_registry()
    stage = {"epochs": 1, "batch_size": 8, "warmup_steps": 0,
             "optimizer": {"name": "adam", "lr": 1e-3}}
    tiny = {"pipeline": {
                "text": {"encoder": {"name": "word2vec-lstm", "params": {
                    "vector_size": 16, "hidden_size": 16, "out_dim": 16}}},
                "image": {"encoder": {"name": "mobilenetv3-large", "params": {"out_dim": 16}}}},
            "train": {"device": "cpu", "threads": 1},
            "evaluate": {"examples": 1, "block_size": 5}}
    contrastive = {**tiny, "preset": "contrastive-shapes",
                   "train": {**tiny["train"], "stages": {"contrastive": stage}}}
    rerank = {**tiny, "preset": "daer-rerank-shapes",
              "pipeline": {**tiny["pipeline"], "relation": {
                  "name": "mlp", "params": {"in_dim": 32, "hidden": [16, 8]}}},
              "train": {**tiny["train"], "stages": {"contrastive": stage, "relation": stage}},
              "evaluate": {**tiny["evaluate"], "rerank_k": 4}}
    cfg = {"name": "tiny-instance", "runs": 2, "resample": {"mode": "none"},
           "datasets": {"shapes": {"dataset": SHAPES}},
           "methods": {"contrastive": {"daer": contrastive}, "rerank": {"daer": rerank}}}
    config, _ = load_benchmark_config(write_config(tmp_path, cfg))
    outcome = run_benchmark(config, tmp_path / "out", registry=reg, progress=False)
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 4 and {r["protocol"] for r in rows} == {"instance"}
    for r in rows:
        assert 0 <= float(r["rsum"]) <= 600 and int(r["n_images"]) > 0
        assert math.isfinite(float(r["avg"]))   # shapes has classes: the class view
        assert (r["first_stage_rsum"] != "") == (r["method"] == "rerank")
    md = outcome.markdown
    for row in ("| contrastive |", "| rerank |", "| rerank (first stage) |", "| chance |"):
        assert row in md
    assert "### Re-ranking against its first stage" in md and "### Class view" in md
    assert (tmp_path / "out" / "rsum_bars.png").is_file()
