"""Semantic matching (sm) and semantic correlation matching (scm), Rasiwasia et al. 2010.

Every term on small hand-computed cases (softmax, targets, the logistic objective and its
gradient, each distance), the classifier against scikit-learn's, both methods on synthetic
features, the benchmark ranking by the method's own distance, and — where the shared
Wikipedia features are present — SCM against its published mAP.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from baseline_synthetic import make_pairs
from daer_core.benchmark.cells import run_baseline
from daer_core.benchmark.config import MethodEntry
from daer_core.benchmark.data import BenchmarkData
from daer_core.evaluation.metrics import retrieval_report
from daer_core.interfaces.data import FeatureSplit
from plugins.baselines import CCA, SCM, SM
from plugins.baselines.semantic import (SemanticClassifier, distance_matrix, label_targets,
                                        logistic_objective, similarity_matrix, softmax)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikipedia"

# ---------------------------------------------------------------------------------------------
# the semantic space


def test_softmax_hand_computed_and_overflow_safe():
    np.testing.assert_allclose(softmax([[0.0, math.log(3.0)]]), [[0.25, 0.75]])
    np.testing.assert_allclose(softmax([[1000.0, 1000.0, 1000.0 + math.log(2.0)]]),
                               [[0.25, 0.25, 0.5]])
    np.testing.assert_allclose(softmax([[-1000.0, 0.0]]), [[0.0, 1.0]], atol=1e-300)


def test_label_targets_one_hot_and_multi_hot():
    np.testing.assert_array_equal(label_targets(np.array([2, 0]), 2),
                                  [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(label_targets(np.array([[1, 1, 0], [0, 0, 1]]), 2),
                                  [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="no label"):
        label_targets(np.array([0, -1]), 2)


def test_logistic_objective_hand_computed():
    """x = +1 / -1 with classes 0 / 1 and all parameters zero: every probability is 1/2."""
    x = np.array([[1.0], [-1.0]])
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    value, grad = logistic_objective(np.zeros(4), x, t, c=3.0, fit_intercept=True)
    assert value == pytest.approx(3.0 * 2 * math.log(2.0))
    # dW = C x^T (P - T) = 3 * [[-1/2 - 1/2, 1/2 + 1/2]]; db = C * sum(P - T) = 0
    np.testing.assert_allclose(grad, [-3.0, 3.0, 0.0, 0.0])
    # W = [[a, -a]]: the penalty is a^2 and P(true class) = 1 / (1 + e^{-2a}) for both rows
    a = 0.7
    value, _ = logistic_objective(np.array([a, -a]), x, t, c=3.0, fit_intercept=False)
    assert value == pytest.approx(a * a + 3.0 * 2 * math.log(1 + math.exp(-2 * a)))


def test_logistic_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3))
    t = label_targets(np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 1]] * 3), 9)
    p = rng.normal(size=3 * 4 + 4)
    _, grad = logistic_objective(p, x, t, c=2.0, fit_intercept=True)
    eps = 1e-6
    numeric = [(logistic_objective(p + eps * e, x, t, 2.0, True)[0]
                - logistic_objective(p - eps * e, x, t, 2.0, True)[0]) / (2 * eps)
               for e in np.eye(len(p))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_classifier_matches_scikit_learn_multinomial_logistic_regression():
    """Same objective as sklearn's L2 multinomial LogisticRegression (unpenalised intercept)."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, _, labels = make_pairs(n=150, classes=4, noise=1.0, seed=3)
    for c in (0.05, 1.0):
        ours = SemanticClassifier(C=c).fit(x, label_targets(labels, len(labels)))
        ref = sklearn.LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(x, labels)
        np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# distances (p and q as rows; by hand)

P = np.array([[0.5, 0.5, 0.0]])
Q = np.array([[0.25, 0.25, 0.5]])


def test_normalised_correlation_hand_computed():
    # p.q = 1/4, |p| = sqrt(1/2), |q| = sqrt(3/8): cos = 1/sqrt(3)
    assert distance_matrix(P, Q, "ncorr")[0, 0] == pytest.approx(1 - 1 / math.sqrt(3))
    # centred: p - 1/3 = (1/6, 1/6, -1/3) and q - 1/3 = (-1/12, -1/12, 1/6) = -(p - 1/3)/2
    assert distance_matrix(P, Q, "ncorr-centred")[0, 0] == pytest.approx(2.0)
    assert distance_matrix(P, P, "ncorr-centred")[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_l1_l2_hand_computed():
    assert distance_matrix(P, Q, "l1")[0, 0] == pytest.approx(1.0)
    assert distance_matrix(P, Q, "l2")[0, 0] == pytest.approx(math.sqrt(0.375))


def test_symmetrised_kl_hand_computed():
    p = np.array([[0.25, 0.5, 0.25]])
    q = np.array([[0.5, 0.25, 0.25]])
    # KL(p|q) = KL(q|p) = 1/4 log 2, so the sum is 1/2 log 2
    assert distance_matrix(p, q, "kl")[0, 0] == pytest.approx(0.5 * math.log(2.0))
    assert distance_matrix(p, p, "kl")[0, 0] == pytest.approx(0.0, abs=1e-12)
    # a zero probability is clipped, not a division by zero: finite and large
    d = distance_matrix(P, Q, "kl")[0, 0]
    assert np.isfinite(d) and d > 5
    with pytest.raises(ValueError, match="probability"):
        distance_matrix(-P, Q, "kl")


@pytest.mark.parametrize("distance", ["ncorr", "ncorr-centred", "kl", "l1", "l2"])
def test_distance_matrices_match_pairwise_definitions(distance):
    """Blocked / expanded matrix forms equal the per-pair definition (over 256-row blocks)."""
    rng = np.random.default_rng(1)
    a, b = softmax(rng.normal(size=(300, 5))), softmax(rng.normal(size=(7, 5)))

    def pair(p, q):
        if distance == "l1":
            return np.abs(p - q).sum()
        if distance == "l2":
            return np.sqrt(((p - q) ** 2).sum())
        if distance == "kl":
            return (p * np.log(p / q)).sum() + (q * np.log(q / p)).sum()
        if distance == "ncorr-centred":
            p, q = p - p.mean(), q - q.mean()
        return 1 - p @ q / np.linalg.norm(p) / np.linalg.norm(q)

    expected = np.array([[pair(p, q) for q in b] for p in a])
    np.testing.assert_allclose(distance_matrix(a, b, distance), expected, atol=1e-10)
    np.testing.assert_allclose(similarity_matrix(a, b, distance), -expected, atol=1e-10)


def test_unknown_distance_and_width_mismatch_are_errors():
    with pytest.raises(ValueError, match="unknown distance"):
        distance_matrix(P, Q, "hamming")
    with pytest.raises(ValueError, match="one width"):
        distance_matrix(P, Q[:, :2], "l1")
    with pytest.raises(ValueError, match=r"distance\n.*'ncorr'"):
        SM(distance="hamming")


# ---------------------------------------------------------------------------------------------
# the methods


def test_sm_maps_each_modality_to_its_own_classifier_probabilities():
    x, y, labels = make_pairs(n=120, classes=4)
    sm = SM(C=10.0).fit(x, y, labels)
    pi, pt = sm.transform_image(x), sm.transform_text(y)
    assert pi.shape == pt.shape == (120, 4)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    np.testing.assert_allclose(pi, softmax(x @ sm.image_classifier_.coef_
                                           + sm.image_classifier_.intercept_))
    np.testing.assert_allclose(pt, softmax(y @ sm.text_classifier_.coef_
                                           + sm.text_classifier_.intercept_))
    # a classifier fitted on its own data: mostly right on its training samples
    assert (pi.argmax(axis=1) == labels).mean() > 0.8
    with pytest.raises(ValueError, match="features but the method was fitted on"):
        sm.transform_text(x)


def test_scm_is_logistic_regression_on_the_cca_variates():
    x, y, labels = make_pairs(n=150, classes=4)
    scm = SCM(C=5.0, n_components=3, cca_reg=1e-3).fit(x, y, labels)
    cca = CCA(n_components=3, reg=1e-3).fit(x, y)
    u, v = cca.transform_image(x), cca.transform_text(y)
    np.testing.assert_allclose(scm.cca_.transform_image(x), u, atol=1e-10)
    targets = label_targets(labels, len(labels))
    img = SemanticClassifier(C=5.0).fit(u, targets)
    txt = SemanticClassifier(C=5.0).fit(v, targets)
    np.testing.assert_allclose(scm.transform_image(x), img.predict_proba(u), atol=1e-6)
    np.testing.assert_allclose(scm.transform_text(y), txt.predict_proba(v), atol=1e-6)
    assert scm.image_classifier_.coef_.shape == (3, 4)


@pytest.fixture(scope="module")
def synthetic_fits():
    """SM and SCM fitted once on 350 synthetic pairs (5 classes); 150 held-out pairs."""
    x, y, labels = make_pairs(n=500, classes=5, noise=1.5, seed=4)
    tr, te = slice(0, 350), slice(350, None)
    fits = {cls: cls(C=10.0).fit(x[tr], y[tr], labels[tr]) for cls in (SM, SCM)}
    return fits, x[te], y[te], labels[te]


@pytest.mark.parametrize("cls", [SM, SCM])
@pytest.mark.parametrize("distance", ["ncorr", "ncorr-centred", "kl", "l1", "l2"])
def test_semantic_methods_far_above_chance_on_synthetic_features(cls, distance,
                                                                 synthetic_fits):
    fits, x_te, y_te, lab_te = synthetic_fits
    m = copy.copy(fits[cls])
    m.distance = distance               # the distance does not change what fit learns
    scores = m.similarity(m.transform_image(x_te), m.transform_text(y_te))
    assert scores.shape == (150, 150)
    report = retrieval_report(scores, lab_te, lab_te)
    assert report["i2t"] > report["chance"] + 0.3 and report["t2i"] > report["chance"] + 0.3


def test_semantic_methods_through_the_registry():
    import registry

    m = registry.create("method", "scm", {"distance": "l1", "C": 3.0})
    assert isinstance(m, SCM) and (m.distance, m.C, m.n_components) == ("l1", 3.0, None)
    assert registry.create("method", "sm", {}).distance == "ncorr"
    with pytest.raises(Exception, match="distance"):
        registry.create("method", "sm", {"distance": "hamming"})


def test_benchmark_ranks_by_the_methods_own_distance():
    """run_baseline uses ``similarity``: l1 and l2 on the same probabilities give different
    mAPs, each equal to the report of the method's own score matrix."""
    import registry

    x, y, labels = make_pairs(n=300, classes=4, noise=2.0, seed=7)
    data = BenchmarkData(FeatureSplit(x[:200], y[:200], labels[:200]),
                         FeatureSplit(x[200:], y[200:], labels[200:]), "synthetic")
    reg = registry.get_registry()
    rows = np.arange(200)
    got = {}
    for distance in ("l1", "kl"):
        entry = MethodEntry(name="sm", params={"distance": distance, "C": 10.0})
        got[distance] = run_baseline(reg, entry, data, rows, seed=0).metrics
        m = SM(distance=distance, C=10.0).fit(x[:200], y[:200], labels[:200])
        scores = similarity_matrix(m.transform_text(y[200:]), m.transform_image(x[200:]),
                                   distance)
        expected = retrieval_report(scores, labels[200:], labels[200:])
        assert got[distance]["i2t"] == pytest.approx(expected["i2t"])
        assert got[distance]["t2i"] == pytest.approx(expected["t2i"])
    assert got["l1"]["i2t"] != pytest.approx(got["kl"]["i2t"], abs=1e-6)


def test_default_similarity_of_other_methods_is_cosine():
    x, y, labels = make_pairs(n=100)
    cca = CCA().fit(x, y)
    a, b = cca.transform_image(x), cca.transform_text(y)
    expected = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ (
        a / np.linalg.norm(a, axis=1, keepdims=True)).T
    np.testing.assert_allclose(cca.similarity(a, b), expected)


# ---------------------------------------------------------------------------------------------
# the published reproduction point


@pytest.mark.skipif(not (DATA / "raw_features.mat").is_file(),
                    reason=f"Wikipedia features not present at {DATA}")
def test_scm_reproduces_the_published_map_on_the_wikipedia_features():
    """Rasiwasia et al. 2010: SCM 0.277 image->text, 0.226 text->image (full training split,
    default params: C = 1, normalised correlation)."""
    from scipy.io import loadmat

    def labels(name):
        rows = [r.split("\t") for r in (DATA / name).read_text().splitlines() if r.strip()]
        return np.array([int(r[2]) for r in rows]) - 1

    mat = loadmat(DATA / "raw_features.mat")
    y_tr, y_te = labels("trainset_txt_img_cat.list"), labels("testset_txt_img_cat.list")
    scm = SCM().fit(mat["I_tr"], mat["T_tr"], y_tr)
    scores = scm.similarity(scm.transform_image(mat["I_te"]), scm.transform_text(mat["T_te"]))
    report = retrieval_report(scores, y_te, y_te)
    assert abs(report["i2t"] - 0.277) <= 0.03, report["i2t"]
    assert abs(report["t2i"] - 0.226) <= 0.03, report["t2i"]


def test_cli_lists_both_methods_and_documents_the_params_of_scm(capsys):
    import json

    from daer_core.cli.main import main

    assert main(["plugins", "list", "--json"]) == 0
    components = {(c["kind"], c["name"]) for c in json.loads(capsys.readouterr().out)["components"]}
    assert {("method", "sm"), ("method", "scm")} <= components
    assert main(["plugins", "show", "scm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "method"
    params = {p["name"]: p for p in doc["params"]}
    assert {"distance", "C", "fit_intercept", "n_components", "cca_reg"} <= set(params)
    assert params["distance"]["default"] == "ncorr" and params["C"]["default"] == 1.0
    assert all(params[name]["doc"] for name in ("distance", "C", "cca_reg"))
    assert main(["plugins", "show", "scm"]) == 0
    out = capsys.readouterr().out
    assert "ncorr-centred" in out and "cca_reg" in out


@pytest.mark.skipif(not (DATA / "raw_features.mat").is_file(),
                    reason=f"Wikipedia features not present at {DATA}")
def test_table1_config_scm_is_within_003_of_the_published_map(tmp_path):
    """The committed Table 1 config's SCM (2 of its runs) through `daer benchmark`'s runner."""
    import csv

    import registry
    from daer_core.benchmark import load_benchmark_config, run_benchmark

    config_path = Path(__file__).resolve().parents[2] / "configs" / "benchmarks" / (
        "table1-wikipedia-features.yaml")
    config, _root = load_benchmark_config(config_path, ["runs=2"])
    config = config.model_copy(update={"methods": {"SCM": config.methods["SCM"]},
                                       "reference": None})
    outcome = run_benchmark(config, tmp_path, registry=registry.get_registry(), progress=False)
    with outcome.results_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for key, published in (("i2t", 0.277), ("t2i", 0.226)):
        mean = np.mean([float(r[key]) for r in rows])
        assert abs(mean - published) <= 0.03, (key, mean)
