"""Shared checks and linear algebra for the baseline methods.

The baselines are small numerical programs; what they share is input validation (so a bad
matrix is reported with the argument it came from, not as a LinAlgError deep inside SciPy),
ridge regularisation expressed relative to the data's own scale, a pseudo-inverse square root
for covariance matrices that may be singular (LDA topic proportions sum to one), and a
deterministic sign convention for projection directions.
"""
from __future__ import annotations

import numpy as np
from sklearn.utils import check_array


def as_matrix(name: str, values, *, rows: int | None = None) -> np.ndarray:
    """A finite float64 ``(N, D)`` matrix, or a ``ValueError`` naming the argument.

    Shape, dtype and emptiness are scikit-learn's ``check_array``; what it does not say, and
    this adds, is which argument failed and where the first non-finite value sits.
    """
    try:
        arr = check_array(values, dtype=np.float64, ensure_all_finite=False)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but {rows} were expected"
                         " (image and text features must be aligned pair by pair)")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains a non-finite value (first at row {bad[0]},"
                         f" column {bad[1]})")
    return arr


def check_pairs(image_feats, text_feats) -> tuple[np.ndarray, np.ndarray]:
    """Validate aligned image and text training matrices."""
    x = as_matrix("image_feats", image_feats)
    y = as_matrix("text_feats", text_feats, rows=x.shape[0])
    if x.shape[0] < 2:
        raise ValueError("at least two training pairs are needed to estimate a covariance")
    return x, y


def check_fitted(method, attr: str) -> None:
    if not hasattr(method, attr):
        raise RuntimeError(f"{type(method).__name__} is not fitted yet; call fit() first")


def check_width(name: str, feats, expected: int) -> np.ndarray:
    arr = as_matrix(name, feats)
    if arr.shape[1] != expected:
        raise ValueError(f"{name} has {arr.shape[1]} features but the method was fitted on"
                         f" {expected}")
    return arr


def label_membership(labels, n: int, *, allow_unlabelled: bool = False) -> np.ndarray:
    """``(N, C)`` 0/1 class membership from ``(N,)`` class ids or ``(N, C)`` multi-hot labels.

    With ``allow_unlabelled``, a class id below zero (or an all-zero multi-hot row) marks a
    pair without a label; otherwise such a row is an error.
    """
    lab = np.asarray(labels)
    if lab.shape[:1] != (n,):
        raise ValueError(f"labels have {lab.shape[0] if lab.ndim else 0} rows but there are"
                         f" {n} training pairs")
    if lab.ndim == 1:
        if not np.issubdtype(lab.dtype, np.integer):
            if not np.all(np.equal(np.mod(lab, 1), 0)):
                raise ValueError("1-D labels must be integer class ids")
            lab = lab.astype(np.int64)
        known = lab >= 0
        num_classes = int(lab.max()) + 1 if known.any() else 0
        member = np.zeros((n, num_classes))
        member[np.flatnonzero(known), lab[known]] = 1.0
    elif lab.ndim == 2:
        member = (np.asarray(lab, dtype=np.float64) > 0).astype(np.float64)
    else:
        raise ValueError(f"labels must be (N,) class ids or (N, C) multi-hot, got {lab.shape}")
    missing = member.sum(axis=1) == 0
    if missing.any() and not allow_unlabelled:
        raise ValueError(f"{int(missing.sum())} training pairs have no label (first at row"
                         f" {int(np.flatnonzero(missing)[0])}); this method is supervised")
    return member


def scaled_ridge(cov: np.ndarray, reg: float) -> np.ndarray:
    """``cov + reg * mean(diag(cov)) * I``: a ridge that does not depend on the feature scale."""
    scale = float(np.trace(cov)) / cov.shape[0]
    if scale <= 0:
        scale = 1.0
    return cov + reg * scale * np.eye(cov.shape[0])


def inv_sqrt_psd(cov: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Pseudo-inverse square root of a symmetric PSD matrix.

    Eigen-directions with eigenvalue below ``rtol * max`` are dropped (mapped to zero), so a
    singular covariance yields the analysis restricted to the data's span instead of NaNs.
    Returns a ``(D, r)`` matrix ``W`` with ``W.T @ cov @ W = I_r``.
    """
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    top = vals.max() if vals.size else 0.0
    keep = vals > rtol * max(top, np.finfo(float).tiny)
    return vecs[:, keep] / np.sqrt(vals[keep])


def orient(first: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flip column signs so the largest-magnitude entry of each column of ``first`` is positive.

    Eigen- and singular vectors are defined up to sign; fixing it makes results reproducible
    and lets tests compare projections directly. The same flips are applied to ``others``.
    """
    idx = np.argmax(np.abs(first), axis=0)
    signs = np.sign(first[idx, np.arange(first.shape[1])])
    signs[signs == 0] = 1.0
    return (first * signs, *(o * signs for o in others))


def cca_from_covariances(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray, reg: float,
                         n_components: int | None, rtol: float = 1e-10
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regularised CCA given centred (co)variances.

    Whitens each side with the pseudo-inverse square root of its ridged covariance and takes
    the SVD of the whitened cross-covariance: the singular values are the canonical
    correlations and the singular vectors, mapped back, the projection directions.
    Returns ``(image_weights (Dx, d), text_weights (Dy, d), correlations (d,))``.
    """
    wx = inv_sqrt_psd(scaled_ridge(cxx, reg), rtol)
    wy = inv_sqrt_psd(scaled_ridge(cyy, reg), rtol)
    u, s, vt = np.linalg.svd(wx.T @ cxy @ wy, full_matrices=False)
    limit = min(wx.shape[1], wy.shape[1])
    d = limit if n_components is None else min(int(n_components), limit)
    a = wx @ u[:, :d]
    b = wy @ vt[:d].T
    a, b = orient(a, b)
    return a, b, np.clip(s[:d], 0.0, None)


class CentredLinearProjections:
    """``transform_*`` of methods that learn a mean and a projection matrix per medium.

    The method's ``fit`` sets ``image_mean_``, ``image_weights_``, ``text_mean_`` and
    ``text_weights_``; a sample is projected as ``(x - mean) @ weights``.
    """

    def transform_image(self, image_feats) -> np.ndarray:
        check_fitted(self, "image_weights_")
        x = check_width("image_feats", image_feats, self.image_weights_.shape[0])
        return (x - self.image_mean_) @ self.image_weights_

    def transform_text(self, text_feats) -> np.ndarray:
        check_fitted(self, "text_weights_")
        y = check_width("text_feats", text_feats, self.text_weights_.shape[0])
        return (y - self.text_mean_) @ self.text_weights_
