"""CCA and KCCA checked against independent computations and invariances."""
from __future__ import annotations

import numpy as np
import pytest

from baseline_synthetic import cosine_scores, make_pairs
from daer_core.evaluation.metrics import retrieval_report
from plugins.baselines import CCA, KCCA


def _canonical_correlations_qr(x, y):
    """Björck & Golub: singular values of Qx^T Qy for orthonormal bases of the centred data."""
    qx, _ = np.linalg.qr(x - x.mean(0))
    qy, _ = np.linalg.qr(y - y.mean(0))
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def test_cca_correlations_match_qr_computation():
    x, y, _ = make_pairs()
    cca = CCA(reg=0.0).fit(x, y, None)
    expected = _canonical_correlations_qr(x, y)
    assert cca.correlations_.shape == (7,)
    np.testing.assert_allclose(cca.correlations_, expected[:7], atol=1e-8)


def test_cca_variates_are_canonical():
    """Training variates: unit variance, pairwise correlation = canonical correlation, else 0."""
    x, y, _ = make_pairs(seed=3)
    cca = CCA(reg=0.0).fit(x, y, None)
    u, v = cca.transform_image(x), cca.transform_text(y)
    n = len(x)
    np.testing.assert_allclose(u.T @ u / n, np.eye(u.shape[1]), atol=1e-8)
    np.testing.assert_allclose(v.T @ v / n, np.eye(v.shape[1]), atol=1e-8)
    np.testing.assert_allclose(u.T @ v / n, np.diag(cca.correlations_), atol=1e-8)


def test_cca_regularisation_shrinks_correlations():
    x, y, _ = make_pairs(n=60, dx=30, dy=20, noise=2.0)
    free = CCA(reg=0.0).fit(x, y, None).correlations_
    ridge = CCA(reg=0.5).fit(x, y, None).correlations_
    assert free[0] > ridge[0]


@pytest.mark.parametrize("method", [CCA(reg=1e-3), KCCA(rank=80, reg=1e-2)])
def test_projections_invariant_to_feature_order(method):
    x, y, labels = make_pairs(n=200)
    px, py = np.random.default_rng(1).permutation(x.shape[1]), np.random.default_rng(2).permutation(y.shape[1])
    a = type(method)(**method.__dict__).fit(x, y, labels)
    b = type(method)(**method.__dict__).fit(x[:, px], y[:, py], labels)
    np.testing.assert_allclose(a.transform_image(x), b.transform_image(x[:, px]), atol=1e-7)
    np.testing.assert_allclose(a.transform_text(y), b.transform_text(y[:, py]), atol=1e-7)


def _same_up_to_column_sign(a, b, atol):
    """Canonical directions are defined up to sign; align b's columns to a's, then compare."""
    signs = np.sign((a * b).sum(axis=0))
    np.testing.assert_allclose(a, b * signs, atol=atol)


def test_kcca_linear_kernel_matches_cca():
    x, y, _ = make_pairs(n=250)
    cca = CCA(reg=0.0).fit(x, y, None)
    kcca = KCCA(kernel="linear", reg=0.0, rank=250).fit(x, y, None)
    np.testing.assert_allclose(kcca.correlations_, cca.correlations_, atol=1e-7)
    a_img, b_img = cca.transform_image(x), kcca.transform_image(x)
    a_txt, b_txt = cca.transform_text(y), kcca.transform_text(y)
    signs = np.sign((a_img * b_img).sum(axis=0))
    _same_up_to_column_sign(a_img, b_img, 1e-6)
    # the same flip must align the text side: a pair's directions flip together
    np.testing.assert_allclose(a_txt, b_txt * signs, atol=1e-6)


def test_kcca_gaussian_finds_nonlinear_dependence():
    """y = x^2 has no linear correlation with x; a Gaussian kernel recovers it."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(400, 1))
    y = x ** 2 + 0.05 * rng.normal(size=(400, 1))
    linear = CCA(reg=0.0).fit(x, y, None).correlations_[0]
    kernel = KCCA(rank=100, reg=1e-3, n_components=1).fit(x, y, None).correlations_[0]
    assert linear < 0.2
    assert kernel > 0.9


def test_kcca_chunking_does_not_change_result():
    x, y, _ = make_pairs(n=150)
    whole = KCCA(rank=60, chunk_size=1000).fit(x, y, None)
    parts = KCCA(rank=60, chunk_size=7).fit(x, y, None)
    np.testing.assert_allclose(whole.correlations_, parts.correlations_, atol=1e-9)
    np.testing.assert_allclose(whole.transform_image(x), parts.transform_image(x), atol=1e-8)


def test_kcca_rank_is_capped_and_sigma_resolved():
    x, y, _ = make_pairs(n=40)
    k = KCCA(rank=1000).fit(x, y, None)
    assert len(k.landmark_index_) == 40
    assert k.image_sigma_ > 0 and k.text_sigma_ > 0
    fixed = KCCA(rank=10, image_sigma=3.0).fit(x, y, None)
    assert fixed.image_sigma_ == 3.0


def test_cca_retrieves_above_chance():
    x, y, labels = make_pairs(n=400, seed=5)
    cca = CCA().fit(x[:300], y[:300], labels[:300])
    report = retrieval_report(cosine_scores(cca, x[300:], y[300:]), labels[300:], labels[300:])
    assert report["avg"] > report["chance"] + 0.2


def test_errors_name_the_argument():
    x, y, _ = make_pairs(n=50)
    with pytest.raises(RuntimeError, match="not fitted"):
        CCA().transform_image(x)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"image_feats.*row 3"):
        CCA().fit(bad, y, None)
    with pytest.raises(ValueError, match="text_feats has 49 rows"):
        CCA().fit(x, y[:49], None)
    cca = CCA().fit(x, y, None)
    with pytest.raises(ValueError, match="text_feats has 6 features"):
        cca.transform_text(y[:, :6])
    with pytest.raises(ValueError, match=r"kernel\n.*'gaussian' or 'linear'"):
        KCCA(kernel="poly")  # the params model validates at construction
