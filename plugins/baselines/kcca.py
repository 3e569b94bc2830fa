"""Kernel CCA with a Nyström low-rank approximation (the "KCCA" baseline, Gaussian kernel).

Exact KCCA solves a generalised eigenproblem on two N x N Gram matrices, which for 32k
training pairs is 8 GB each. Here each kernel is approximated by the Nyström method
(Williams & Seeger 2001): with m landmark pairs L and K_mm = U diag(l) U^T, the feature map

    phi(x) = k(x, L) U diag(l)^-1/2       (eigenvalues below rtol * max dropped)

satisfies phi(x) . phi(x') ~= k(x, x'), so KCCA becomes regularised linear CCA on the
m-dimensional features (ridge on the feature-space covariances plays the role of KCCA's
regulariser). The covariances are accumulated chunk by chunk, so memory is O(m^2 + chunk * m)
whatever N is, and time is O(N m^2).

With a linear kernel and landmarks spanning the input space, phi is an invertible linear map
of the inputs, and the result equals linear CCA (a property the tests check).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from daer_core.interfaces.methods import Configured, CrossModalMethod
from registry import Params

from ._common import (cca_from_covariances, check_fitted, check_pairs, check_width,
                      inv_sqrt_psd)


class KCCAParams(Params):
    kernel: Literal["gaussian", "linear"] = Field(
        "gaussian", description="gaussian: exp(-|x-y|^2 / (2 sigma^2)); linear: x . y")
    image_sigma: float | None = Field(
        None, gt=0, description="Gaussian width for images; default: sigma_scale x the median"
                                " pairwise distance between the image landmarks")
    text_sigma: float | None = Field(
        None, gt=0, description="Gaussian width for texts; default: median heuristic as above")
    sigma_scale: float = Field(1.0, gt=0, description="multiplier of the median-heuristic width")
    reg: float = Field(1e-2, ge=0.0, description="ridge on each feature-space covariance, as a"
                                                 " fraction of its mean variance")
    n_components: int | None = Field(
        None, ge=1, description="canonical pairs kept; default min(image dim, text dim) of the"
                                " inputs, as for linear CCA")
    rank: int = Field(1000, ge=1, description="Nyström landmarks (approximation rank); capped at"
                                              " the number of training pairs")
    seed: int = Field(0, description="seed of the landmark sample")
    chunk_size: int = Field(2048, ge=1, description="rows per block when mapping features"
                                                    " (bounds peak memory)")


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _median_width(points: np.ndarray) -> float:
    d = _sq_dists(points, points)
    off = d[np.triu_indices(len(points), k=1)]
    off = off[off > 0]
    return float(np.sqrt(np.median(off))) if off.size else 1.0


class _NystromMap:
    """phi(x) for one modality: kernel values against the landmarks, whitened by K_mm."""

    def __init__(self, kernel: str, landmarks: np.ndarray, sigma: float | None):
        self.kernel, self.landmarks, self.sigma = kernel, landmarks, sigma
        self.whiten = inv_sqrt_psd(self.kernel_values(landmarks))

    def kernel_values(self, x: np.ndarray) -> np.ndarray:
        if self.kernel == "linear":
            return x @ self.landmarks.T
        return np.exp(-_sq_dists(x, self.landmarks) / (2.0 * self.sigma ** 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.kernel_values(x) @ self.whiten

    @property
    def dim(self) -> int:
        return self.whiten.shape[1]


class KCCA(Configured, CrossModalMethod):
    """Kernel CCA (Gaussian or linear) with a Nyström low-rank approximation, memory
    independent of the training-set size.

    Gaussian- (or linear-) kernel CCA through Nyström features.

    Learned: ``landmark_index_``, ``image_sigma_``, ``text_sigma_``, ``correlations_`` and the
    feature-space means and weights.
    """

    params_model = KCCAParams

    def _width(self, given: float | None, landmarks: np.ndarray) -> float | None:
        if self.kernel == "linear":
            return None
        return float(given) if given is not None else self.sigma_scale * _median_width(landmarks)

    def fit(self, image_feats, text_feats, labels=None) -> "KCCA":
        """Learn the kernel canonical directions; ``labels`` are ignored (unsupervised)."""
        if self.kernel not in ("gaussian", "linear"):
            raise ValueError(f"unknown kernel {self.kernel!r}; use 'gaussian' or 'linear'")
        x, y = check_pairs(image_feats, text_feats)
        n = x.shape[0]
        rng = np.random.default_rng(self.seed)
        m = min(int(self.rank), n)
        self.landmark_index_ = np.sort(rng.choice(n, size=m, replace=False))
        lx, ly = x[self.landmark_index_], y[self.landmark_index_]
        self.image_sigma_ = self._width(self.image_sigma, lx)
        self.text_sigma_ = self._width(self.text_sigma, ly)
        self._image_map = _NystromMap(self.kernel, lx, self.image_sigma_)
        self._text_map = _NystromMap(self.kernel, ly, self.text_sigma_)

        px, py = self._image_map.dim, self._text_map.dim
        sx, sy = np.zeros(px), np.zeros(py)
        cxx, cyy, cxy = np.zeros((px, px)), np.zeros((py, py)), np.zeros((px, py))
        for start in range(0, n, self.chunk_size):
            fx = self._image_map(x[start:start + self.chunk_size])
            fy = self._text_map(y[start:start + self.chunk_size])
            sx += fx.sum(0)
            sy += fy.sum(0)
            cxx += fx.T @ fx
            cyy += fy.T @ fy
            cxy += fx.T @ fy
        self.image_mean_, self.text_mean_ = sx / n, sy / n
        cxx = cxx / n - np.outer(self.image_mean_, self.image_mean_)
        cyy = cyy / n - np.outer(self.text_mean_, self.text_mean_)
        cxy = cxy / n - np.outer(self.image_mean_, self.text_mean_)
        n_comp = self.n_components if self.n_components is not None else min(x.shape[1],
                                                                              y.shape[1])
        self.image_weights_, self.text_weights_, self.correlations_ = cca_from_covariances(
            cxx, cyy, cxy, self.reg, n_comp)
        self.n_features_in_ = (x.shape[1], y.shape[1])
        return self

    def _project(self, name: str, feats, fmap: _NystromMap, mean: np.ndarray,
                 weights: np.ndarray, width: int) -> np.ndarray:
        arr = check_width(name, feats, width)
        out = np.empty((arr.shape[0], weights.shape[1]))
        for start in range(0, arr.shape[0], self.chunk_size):
            block = arr[start:start + self.chunk_size]
            out[start:start + len(block)] = (fmap(block) - mean) @ weights
        return out

    def transform_image(self, image_feats) -> np.ndarray:
        check_fitted(self, "image_weights_")
        return self._project("image_feats", image_feats, self._image_map, self.image_mean_,
                             self.image_weights_, self.n_features_in_[0])

    def transform_text(self, text_feats) -> np.ndarray:
        check_fitted(self, "text_weights_")
        return self._project("text_feats", text_feats, self._text_map, self.text_mean_,
                             self.text_weights_, self.n_features_in_[1])
