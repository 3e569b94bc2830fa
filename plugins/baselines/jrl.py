"""Joint representation learning with sparse and semi-supervised regularisation (Zhai, Peng
and Xiao, IEEE TCSVT 2014): the "JRL" baseline.

Each medium p (image, text) gets a projection P_p (Dp x C) onto the C-dimensional label space.
The objective, with every term averaged per sample so the weights do not depend on the
training-set size, is

    sum_p  1/N_l |X_p^l P_p - Y^l|_F^2           label regression on the labelled pairs
         + sparsity * sum_p |P_p|_{2,1}            row sparsity: selects features per medium
         + graph_weight / (2N) * tr(O^T L O)       semi-supervised joint-graph smoothness

where O = [X_1 P_1; X_2 P_2] stacks the projections of every sample of both media (2N nodes)
and L = I - D^-1/2 W D^-1/2 is the normalised Laplacian of a joint graph W with

* an edge between any two samples, of either medium, that share a label (the semantic part),
* an edge between a pair's image and text when the pair has no label, and
* the k nearest neighbours (cosine) of every sample within its own medium (the local part).

Unlabelled pairs (class id < 0, or an all-zero multi-hot row) enter only through the graph.
The l2,1 term is handled by iteratively re-weighted least squares: with
D_p = diag(1 / (2 |row_i(P_p)|)), every step solves one joint linear system for both media.
The graph is never formed densely: the class part is Z Z^T with Z the stacked membership, so
its contribution is computed as products with Z (memory O(N C), not O(N^2)).

Before fitting, each medium is centred and scaled to unit mean squared row norm (stored and
applied in ``transform_*``), which makes ``sparsity`` comparable across feature types.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from daer_core.interfaces.methods import Configured, CrossModalMethod
from registry import Params

from ._common import check_fitted, check_pairs, check_width, label_membership

log = logging.getLogger(__name__)


class JRLParams(Params):
    sparsity: float = Field(1e-3, ge=0.0, description="weight of the l2,1 row-sparsity term")
    graph_weight: float = Field(0.1, ge=0.0, description="weight of the joint-graph Laplacian"
                                                         " term")
    n_neighbors: int = Field(10, ge=0, description="within-medium k nearest neighbours added to"
                                                   " the graph (0: label and pair edges only)")
    max_iter: int = Field(30, ge=1, description="re-weighting iterations for the l2,1 term")
    tol: float = Field(1e-4, gt=0.0, description="stop when the relative change of the"
                                                 " projections falls below this")
    ridge: float = Field(1e-6, ge=0.0, description="tiny ridge that keeps the linear system"
                                                   " well posed")


def _knn_graph(feats: np.ndarray, k: int) -> sp.csr_matrix:
    """Symmetric 0/1 k-nearest-neighbour graph by cosine similarity (no self loops)."""
    n = feats.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return sp.csr_matrix((n, n))
    norm = np.linalg.norm(feats, axis=1, keepdims=True)
    unit = feats / np.where(norm > 0, norm, 1.0)
    rows, cols = [], []
    for start in range(0, n, 2048):
        sims = unit[start:start + 2048] @ unit.T
        idx = np.arange(start, min(start + 2048, n))
        sims[np.arange(len(idx)), idx] = -np.inf
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(idx, k))
        cols.append(nn.ravel())
    g = sp.csr_matrix((np.ones(n * k), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    return ((g + g.T) > 0).astype(np.float64)


class JRL(Configured, CrossModalMethod):
    """Joint representation learning with l2,1 sparsity and a semi-supervised joint graph (Zhai et
    al., TCSVT 2014).

    Label-space projections for image and text learned jointly (see module docstring).
    """

    params_model = JRLParams

    def _standardise(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        mean = x.mean(axis=0)
        xc = x - mean
        scale = float(np.sqrt((xc * xc).sum(axis=1).mean()))
        scale = 1.0 / scale if scale > 0 else 1.0
        return xc * scale, mean, scale

    def _graph_quadratic(self, views: list[np.ndarray], member: np.ndarray) -> np.ndarray:
        """A^T L A for A = blockdiag(X_1, X_2) and the joint graph's normalised Laplacian."""
        n = member.shape[0]
        z = np.vstack([member, member])                       # (2N, C) class membership
        self_loops = (z * z).sum(axis=1)
        unlabelled = np.flatnonzero(member.sum(axis=1) == 0)
        pair = sp.coo_matrix((np.ones(2 * len(unlabelled)),
                              (np.concatenate([unlabelled, unlabelled + n]),
                               np.concatenate([unlabelled + n, unlabelled]))),
                             shape=(2 * n, 2 * n)).tocsr()
        local = sp.block_diag([_knn_graph(v, self.n_neighbors) for v in views], format="csr")
        sparse_part = (pair + local).tocsr()
        degree = z @ z.sum(axis=0) - self_loops + np.asarray(sparse_part.sum(axis=1)).ravel()
        connected = degree > 0
        inv_sqrt = np.where(connected, 1.0 / np.sqrt(np.where(connected, degree, 1.0)), 0.0)
        a = sp.block_diag(views, format="csr")                # (2N, D1 + D2)
        a_scaled = sp.diags(inv_sqrt) @ a
        a_conn = sp.diags(connected.astype(np.float64)) @ a
        identity_part = (a_conn.T @ a_conn).toarray()
        za = (a_scaled.T @ z)                                  # (D, C)
        class_part = za @ za.T - (a_scaled.T @ sp.diags(self_loops) @ a_scaled).toarray()
        sparse_w = (a_scaled.T @ (sparse_part @ a_scaled)).toarray()
        q = identity_part - np.asarray(class_part) - sparse_w
        return (q + q.T) / 2

    def fit(self, image_feats, text_feats, labels) -> "JRL":
        x, y = check_pairs(image_feats, text_feats)
        member = label_membership(labels, x.shape[0], allow_unlabelled=True)
        labelled = member.sum(axis=1) > 0
        if not labelled.any():
            raise ValueError("JRL needs at least one labelled training pair")
        xs, self.image_mean_, self.image_scale_ = self._standardise(x)
        ys, self.text_mean_, self.text_scale_ = self._standardise(y)
        views = [xs, ys]
        dims = [xs.shape[1], ys.shape[1]]
        split = dims[0]
        n, n_lab = x.shape[0], int(labelled.sum())
        targets = member[labelled]
        fit_lhs = np.zeros((sum(dims), sum(dims)))
        fit_lhs[:split, :split] = xs[labelled].T @ xs[labelled] / n_lab
        fit_lhs[split:, split:] = ys[labelled].T @ ys[labelled] / n_lab
        rhs = np.vstack([xs[labelled].T @ targets, ys[labelled].T @ targets]) / n_lab
        lhs = fit_lhs.copy()
        if self.graph_weight > 0:
            lhs += self.graph_weight / (2 * n) * self._graph_quadratic(views, member)
        lhs += self.ridge * np.eye(sum(dims))
        row_weights = np.ones(sum(dims))
        proj = np.linalg.solve(lhs + self.sparsity * np.diag(row_weights), rhs)
        self.n_iter_ = 1
        for it in range(1, self.max_iter):
            if self.sparsity == 0:
                break
            row_norm = np.sqrt((proj * proj).sum(axis=1) + 1e-12)
            row_weights = 1.0 / (2.0 * row_norm)
            new = np.linalg.solve(lhs + self.sparsity * np.diag(row_weights), rhs)
            change = np.linalg.norm(new - proj) / max(np.linalg.norm(proj), 1e-12)
            proj = new
            self.n_iter_ = it + 1
            if change < self.tol:
                break
        else:
            if self.sparsity > 0 and self.max_iter > 1:
                log.debug("JRL stopped after max_iter=%d re-weighting steps", self.max_iter)
        self.image_weights_ = proj[:split]
        self.text_weights_ = proj[split:]
        self.n_classes_ = member.shape[1]
        return self

    def transform_image(self, image_feats) -> np.ndarray:
        check_fitted(self, "image_weights_")
        x = check_width("image_feats", image_feats, self.image_weights_.shape[0])
        return ((x - self.image_mean_) * self.image_scale_) @ self.image_weights_

    def transform_text(self, text_feats) -> np.ndarray:
        check_fitted(self, "text_weights_")
        y = check_width("text_feats", text_feats, self.text_weights_.shape[0])
        return ((y - self.text_mean_) * self.text_scale_) @ self.text_weights_
