"""On the real Wikipedia features (skipped where ../shared/data/wikipedia is absent).

Correlation matching with CCA on SIFT-128 vs LDA-10 was published at 0.249 image->text and
0.196 text->image (Rasiwasia et al. 2010); our CCA must land within 0.03 of both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baseline_synthetic import cosine_scores
from daer_core.evaluation.metrics import retrieval_report

PROJECT = Path(__file__).resolve().parents[2]
DATA = PROJECT.parent / "shared" / "data" / "wikipedia"
CONFIG = PROJECT / "configs" / "benchmarks" / "wikipedia-features.yaml"
PUBLISHED = {"i2t": 0.249, "t2i": 0.196}

pytestmark = pytest.mark.skipif(not (DATA / "raw_features.mat").is_file(),
                                reason=f"Wikipedia features not present at {DATA}")


def _labels(name: str) -> np.ndarray:
    rows = [line.split("\t") for line in (DATA / name).read_text().splitlines() if line.strip()]
    return np.array([int(r[2]) for r in rows]) - 1


def test_cca_reproduces_correlation_matching_from_the_raw_files():
    from scipy.io import loadmat

    from plugins.baselines import CCA

    mat = loadmat(DATA / "raw_features.mat")
    y_tr, y_te = _labels("trainset_txt_img_cat.list"), _labels("testset_txt_img_cat.list")
    assert len(y_tr) == mat["I_tr"].shape[0] and len(y_te) == mat["I_te"].shape[0]
    cca = CCA(reg=1e-4).fit(mat["I_tr"], mat["T_tr"], y_tr)
    report = retrieval_report(cosine_scores(cca, mat["I_te"], mat["T_te"]), y_te, y_te)
    for key, published in PUBLISHED.items():
        assert abs(report[key] - published) <= 0.03, (key, report[key])


def test_benchmark_config_runs_cca_on_the_published_features(tmp_path):
    import registry
    from daer_core.benchmark import load_benchmark_config, run_benchmark

    reg = registry.get_registry()
    if not reg.has("dataset", "features"):
        pytest.skip("the `features` dataset plugin is not installed")
    config, root = load_benchmark_config(CONFIG, ["runs=2"])
    assert Path(config.datasets["wikipedia"].dataset.params["root"]) == DATA.resolve()
    config = config.model_copy(update={"methods": {"CCA": config.methods["CCA"]},
                                       "reference": None})
    outcome = run_benchmark(config, tmp_path, registry=reg, progress=False)
    rows = list(outcome_rows(outcome.results_csv))
    assert len(rows) == 2
    for key, published in PUBLISHED.items():
        mean = np.mean([float(r[key]) for r in rows])
        assert abs(mean - published) <= 0.03, (key, mean)


def outcome_rows(path: Path):
    import csv
    with path.open() as fh:
        yield from csv.DictReader(fh)
