"""MvDA-VC and JRL checked against brute-force definitions of their objectives."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from baseline_synthetic import cosine_scores, make_pairs
from daer_core.evaluation.metrics import retrieval_report
from plugins.baselines import CCA, JRL, MvDAVC
from plugins.baselines.jrl import _knn_graph
from plugins.baselines.mvda_vc import consistency_matrix, scatter_matrices


def _one_hot(labels, c):
    out = np.zeros((len(labels), c))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def test_mvda_scatter_forms_match_projected_scatter():
    """w^T S w and w^T D w equal the scatters of the projected samples of both views."""
    x, y, labels = make_pairs(n=80, dx=5, dy=4, classes=3)
    views = [x, y]
    s_mat, d_mat, offsets = scatter_matrices(views, _one_hot(labels, 3))
    rng = np.random.default_rng(0)
    for _ in range(3):
        w = rng.normal(size=offsets[-1])
        proj = np.concatenate([x @ w[:5], y @ w[5:]])           # all 2N projected samples
        lab = np.concatenate([labels, labels])
        mu = proj.mean()
        within = sum(((proj[lab == c] - proj[lab == c].mean()) ** 2).sum() for c in range(3))
        between = sum((lab == c).sum() * (proj[lab == c].mean() - mu) ** 2 for c in range(3))
        assert w @ s_mat @ w == pytest.approx(within, rel=1e-9)
        assert w @ d_mat @ w == pytest.approx(between, rel=1e-9)


def test_mvda_consistency_matrix_is_beta_difference():
    x, y, _ = make_pairs(n=50, dx=4, dy=3)
    m_mat = consistency_matrix([x, y], reg=0.0)
    w = np.random.default_rng(1).normal(size=7)
    beta_x = x @ np.linalg.solve(x.T @ x, w[:4])
    beta_y = y @ np.linalg.solve(y.T @ y, w[4:])
    expected = 2 * np.sum((beta_x - beta_y) ** 2)          # sum over ordered pairs (j, r)
    assert w @ m_mat @ w == pytest.approx(expected, rel=1e-8)


def test_mvda_maximises_rayleigh_quotient():
    x, y, labels = make_pairs(n=200, classes=4)
    m = MvDAVC(view_consistency=0.0, reg=1e-6).fit(x, y, labels)
    assert m.image_weights_.shape == (12, 3) and m.text_weights_.shape == (7, 3)
    xc, yc = x - x.mean(0), y - y.mean(0)
    s_mat, d_mat, _ = scatter_matrices([xc, yc], _one_hot(labels, 4))
    best = np.concatenate([m.image_weights_[:, 0], m.text_weights_[:, 0]])
    denom = s_mat + 1e-6 * np.trace(s_mat) / len(s_mat) * np.eye(len(s_mat))
    ratio = lambda w: (w @ d_mat @ w) / (w @ denom @ w)  # noqa: E731
    assert ratio(best) == pytest.approx(m.eigenvalues_[0], rel=1e-6)
    rng = np.random.default_rng(2)
    assert all(ratio(rng.normal(size=len(best))) < ratio(best) for _ in range(50))


def test_mvda_beats_cca_on_class_structured_data():
    x, y, labels = make_pairs(n=500, classes=5, noise=1.5, seed=4)
    tr, te = slice(0, 350), slice(350, None)
    mvda = MvDAVC().fit(x[tr], y[tr], labels[tr])
    cca = CCA().fit(x[tr], y[tr], labels[tr])
    r_m = retrieval_report(cosine_scores(mvda, x[te], y[te]), labels[te], labels[te])
    r_c = retrieval_report(cosine_scores(cca, x[te], y[te]), labels[te], labels[te])
    assert r_m["avg"] > r_m["chance"] + 0.2
    assert r_m["avg"] > r_c["avg"]


def test_mvda_feature_order_invariance_and_label_errors():
    x, y, labels = make_pairs(n=120)
    perm = np.random.default_rng(0).permutation(12)
    a = MvDAVC().fit(x, y, labels)
    b = MvDAVC().fit(x[:, perm], y, labels)
    np.testing.assert_allclose(a.transform_image(x), b.transform_image(x[:, perm]), atol=1e-7)
    bad = labels.copy()
    bad[5] = -1
    with pytest.raises(ValueError, match="1 training pairs have no label.*row 5"):
        MvDAVC().fit(x, y, bad)


def _dense_graph_quadratic(views, member, k):
    """Builds the 2N x 2N joint graph densely and forms A^T L A directly."""
    n = member.shape[0]
    z = np.vstack([member, member])
    w = z @ z.T
    np.fill_diagonal(w, 0.0)
    for i in np.flatnonzero(member.sum(1) == 0):
        w[i, n + i] = w[n + i, i] = 1.0
    w[:n, :n] += _knn_graph(views[0], k).toarray()
    w[n:, n:] += _knn_graph(views[1], k).toarray()
    deg = w.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
    lap = np.diag((deg > 0).astype(float)) - inv[:, None] * w * inv[None, :]
    a = sp.block_diag(views).toarray()
    return a.T @ lap @ a


def test_jrl_graph_term_matches_dense_laplacian():
    x, y, labels = make_pairs(n=40, dx=5, dy=3, classes=3)
    member = _one_hot(labels, 3)
    member[[2, 7]] = 0.0                                    # two unlabelled pairs
    jrl = JRL(n_neighbors=3)
    got = jrl._graph_quadratic([x, y], member)
    np.testing.assert_allclose(got, _dense_graph_quadratic([x, y], member, 3), atol=1e-9)


def test_jrl_without_regularisers_is_least_squares():
    x, y, labels = make_pairs(n=150)
    jrl = JRL(sparsity=0.0, graph_weight=0.0, ridge=0.0).fit(x, y, labels)
    xs = (x - x.mean(0)) * jrl.image_scale_
    expected, *_ = np.linalg.lstsq(xs, _one_hot(labels, 4), rcond=None)
    np.testing.assert_allclose(jrl.image_weights_, expected, atol=1e-8)
    assert jrl.transform_text(y).shape == (150, 4)


def test_jrl_sparsity_selects_informative_features():
    """Append pure-noise image features; the l2,1 term drives their rows towards zero."""
    x, y, labels = make_pairs(n=300, dx=6, seed=1)
    noisy = np.hstack([x, np.random.default_rng(9).normal(size=(300, 20)) * x.std()])
    dense = JRL(sparsity=0.0, graph_weight=0.0).fit(noisy, y, labels)
    sparse = JRL(sparsity=0.05, graph_weight=0.0, max_iter=100).fit(noisy, y, labels)
    share = lambda w: np.linalg.norm(w[6:]) / np.linalg.norm(w)  # noqa: E731
    assert share(sparse.image_weights_) < 0.5 * share(dense.image_weights_)
    assert sparse.n_iter_ > 1


def test_jrl_uses_unlabelled_pairs_through_the_graph():
    """Re-pairing the images of the unlabelled pairs changes the learned projection only
    through the graph: with graph_weight 0 it has no effect at all."""
    x, y, labels = make_pairs(n=200)
    partial = labels.copy()
    partial[100:] = -1
    order = np.arange(200)
    order[100:] = 100 + np.random.default_rng(3).permutation(100)
    repaired = x[order]  # same images, paired with other (unlabelled) texts
    with_graph = [JRL(graph_weight=1.0).fit(xx, y, partial).image_weights_ for xx in (x, repaired)]
    assert not np.allclose(*with_graph, atol=1e-6)
    no_graph = [JRL(graph_weight=0.0).fit(xx, y, partial).image_weights_ for xx in (x, repaired)]
    np.testing.assert_allclose(*no_graph, atol=1e-8)
    with pytest.raises(ValueError, match="at least one labelled"):
        JRL().fit(x, y, np.full(200, -1))


def test_jrl_retrieves_above_chance_with_multi_hot_labels():
    x, y, labels = make_pairs(n=400, seed=6)
    multi = _one_hot(labels, 4)
    multi[::7, 0] = 1.0                                     # some pairs carry two labels
    jrl = JRL().fit(x[:300], y[:300], multi[:300])
    report = retrieval_report(cosine_scores(jrl, x[300:], y[300:]), multi[300:], multi[300:])
    assert report["avg"] > report["chance"] + 0.15
