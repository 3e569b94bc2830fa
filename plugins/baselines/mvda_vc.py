"""Multi-view discriminant analysis with view consistency (Kan et al., TPAMI 2016).

MvDA learns one linear projection per view (here: image and text) into a common space where
the between-class scatter of *all* projected samples is large and the within-class scatter
(over both views together, so it also pulls a class's images and texts to one place) is small.

With v views, view j's training matrix X_j (N x Dj, rows are samples), class membership
weights a_ki (rows sum to one; one-hot for single-label data), n_i = sum_k a_ki per view,
N_i = v n_i, class sums G_j = X_j^T A and view sums s_j = X_j^T 1, the projected scatters are
quadratic forms in the stacked projection w = [w_1; ...; w_v]:

    S_jr = delta_jr X_j^T X_j - G_j diag(1/N_i) G_r^T                  (within-class)
    D_jr = G_j diag(1/N_i) G_r^T - s_j s_r^T / (v N)                    (between-class)

View consistency (the "-VC" variant) assumes each view's projection is a combination of its
samples, w_j = X_j^T beta_j, recovered as beta_j = P_j w_j with P_j = X_j (X_j^T X_j)^-1,
and penalises sum_{j,r} |beta_j - beta_r|^2 = w^T M w with
M_jj = 2 (v-1) P_j^T P_j and M_jr = -2 P_j^T P_r.

The projection maximises the generalised Rayleigh quotient w^T D w / w^T (S + lam M) w:
the leading generalised eigenvectors of (D, S + lam M + ridge). ``lam`` is given relative to
trace(S) / trace(M) (the two terms live on very different scales), and the ridge relative to
the mean diagonal of S.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
from pydantic import Field

from daer_core.interfaces.methods import Configured, CrossModalMethod
from registry import Params

from ._common import (CentredLinearProjections, check_pairs, label_membership, orient,
                      scaled_ridge)


class MvDAVCParams(Params):
    n_components: int | None = Field(
        None, ge=1, description="dimensions of the common space; default (classes - 1), the"
                                " rank of the between-class scatter")
    view_consistency: float = Field(
        0.1, ge=0.0, description="weight of the view-consistency term, relative to"
                                 " trace(within-class scatter) / trace(consistency matrix);"
                                 " 0 gives plain MvDA")
    reg: float = Field(1e-3, ge=0.0, description="ridge on the within-class scatter and on each"
                                                 " view's Gram matrix, as a fraction of its"
                                                 " mean diagonal")
    center: bool = Field(True, description="centre each view by its training mean first")


def scatter_matrices(views: list[np.ndarray], weights: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within-class (S) and between-class (D) scatter of projected samples as quadratic forms.

    For any stacked projection w, ``w @ S @ w`` is the within-class scatter and ``w @ D @ w``
    the between-class scatter of all views' projected samples taken together. ``weights`` is
    the (N, C) class membership, rows summing to one. Returns ``(S, D, offsets)`` where view j
    occupies rows ``offsets[j]:offsets[j+1]``.
    """
    v, n = len(views), views[0].shape[0]
    class_total = v * weights.sum(axis=0)                      # N_i over all views
    class_sums = [xv.T @ weights for xv in views]              # G_j
    view_sums = [xv.sum(axis=0) for xv in views]                # s_j
    offsets = np.concatenate([[0], np.cumsum([xv.shape[1] for xv in views])]).astype(int)
    total = int(offsets[-1])
    s_mat, d_mat = np.zeros((total, total)), np.zeros((total, total))
    for j in range(v):
        bj = slice(offsets[j], offsets[j + 1])
        for r in range(v):
            br = slice(offsets[r], offsets[r + 1])
            between = class_sums[j] @ (class_sums[r] / class_total).T
            s_mat[bj, br] = (views[j].T @ views[j] if j == r else 0.0) - between
            d_mat[bj, br] = between - np.outer(view_sums[j], view_sums[r]) / (v * n)
    return s_mat, d_mat, offsets


def consistency_matrix(views: list[np.ndarray], reg: float) -> np.ndarray:
    """M with ``w @ M @ w = sum_{j,r} |beta_j - beta_r|^2``, beta_j = X_j (X_j^T X_j)^-1 w_j."""
    v = len(views)
    offsets = np.concatenate([[0], np.cumsum([xv.shape[1] for xv in views])]).astype(int)
    inv_grams = [np.linalg.pinv(scaled_ridge(xv.T @ xv, reg), hermitian=True) for xv in views]
    m_mat = np.zeros((int(offsets[-1]), int(offsets[-1])))
    for j in range(v):
        bj = slice(offsets[j], offsets[j + 1])
        for r in range(v):
            br = slice(offsets[r], offsets[r + 1])
            cross = inv_grams[j] @ (views[j].T @ views[r]) @ inv_grams[r]
            m_mat[bj, br] = 2.0 * (v - 1) * cross if j == r else -2.0 * cross
    return m_mat


class MvDAVC(Configured, CentredLinearProjections, CrossModalMethod):
    """Multi-view discriminant analysis with view consistency (Kan et al., TPAMI 2016).

    Supervised two-view MvDA-VC; needs a label for every training pair.
    """

    params_model = MvDAVCParams

    def fit(self, image_feats, text_feats, labels) -> "MvDAVC":
        x, y = check_pairs(image_feats, text_feats)
        member = label_membership(labels, x.shape[0])
        member = member[:, member.sum(axis=0) > 0]          # drop classes with no sample
        weights = member / member.sum(axis=1, keepdims=True)  # multi-label: split the sample
        self.image_mean_ = x.mean(axis=0) if self.center else np.zeros(x.shape[1])
        self.text_mean_ = y.mean(axis=0) if self.center else np.zeros(y.shape[1])
        views = [x - self.image_mean_, y - self.text_mean_]
        s_mat, d_mat, offsets = scatter_matrices(views, weights)
        m_mat = consistency_matrix(views, self.reg)
        total = int(offsets[-1])
        lam = 0.0
        if self.view_consistency > 0 and np.trace(m_mat) > 0:
            lam = self.view_consistency * np.trace(s_mat) / np.trace(m_mat)
        denom = scaled_ridge(s_mat + lam * m_mat, self.reg)
        denom = (denom + denom.T) / 2
        d_mat = (d_mat + d_mat.T) / 2
        vals, vecs = scipy.linalg.eigh(d_mat, denom)
        limit = max(1, member.shape[1] - 1)
        k = min(limit if self.n_components is None else int(self.n_components), total)
        order = np.argsort(vals)[::-1][:k]
        w = orient(vecs[:, order])[0]
        self.eigenvalues_ = vals[order]
        self.image_weights_ = w[offsets[0]:offsets[1]]
        self.text_weights_ = w[offsets[1]:offsets[2]]
        self.view_consistency_weight_ = lam
        return self
