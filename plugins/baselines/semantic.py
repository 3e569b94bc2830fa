"""Semantic matching (SM) and semantic correlation matching (SCM), Rasiwasia et al.,
"A new approach to cross-modal multimedia retrieval", ACM MM 2010.

Both methods map every image and every text to a point of one *semantic space*: the simplex of
posterior probabilities over the C training classes (the paper's "semantic multinomial").
Each modality gets its own multiclass logistic-regression classifier,

    P(class c | x) = exp(w_c . x + b_c) / sum_k exp(w_k . x + b_k),

trained on that modality's training samples and the pairs' labels, so a query of one modality
and the items of the other become comparable probability vectors. Retrieval ranks the
gallery by a distance between the query's vector and each item's vector:

* ``ncorr`` — normalised correlation (the paper's NC, the default): the cosine of the two
  probability vectors. It is the measure that reproduces the published SCM numbers on the
  shared Wikipedia features (docs/baselines.md);
* ``ncorr-centred`` — centred normalised correlation (NC_c of the journal version, Costa
  Pereira et al., TPAMI 2014): each vector minus its own mean, then the cosine, i.e.
  Pearson's correlation between the two vectors' entries;
* ``kl`` — Kullback-Leibler divergence, symmetrised, ``KL(p|q) + KL(q|p)``, because one
  score matrix serves both retrieval directions (see :func:`similarity_matrix`);
* ``l1`` / ``l2`` — Manhattan / Euclidean distance.

SM learns the classifiers on the original features. SCM first learns CCA between the two
modalities (``plugins.baselines.cca``: the correlation-matching subspace) and learns the
classifiers on the canonical variates — correlation first, abstraction second.

The classifier is fitted as scikit-learn and LIBLINEAR (whose logistic regression the authors'
released code uses) state the problem: minimise ``1/2 |W|_F^2 + C sum_i CE_i`` with the
intercepts ``b`` unpenalised, ``CE_i = -sum_c t_ic log P(c | x_i)``; ``t_i`` is the pair's
one-hot label, or its multi-hot label divided by its number of classes. The problem is
strictly convex; it is solved with L-BFGS on the analytic gradient
``dW = W + C X^T (P - T)``, ``db = C 1^T (P - T)``.
"""
from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import scipy.optimize
from pydantic import Field

from daer_core.interfaces.methods import Configured, CrossModalMethod
from registry import Params

from ._common import check_fitted, check_pairs, check_width, label_membership
from .cca import CCA

log = logging.getLogger(__name__)

DISTANCES = ("ncorr", "ncorr-centred", "kl", "l1", "l2")
Distance = Literal["ncorr", "ncorr-centred", "kl", "l1", "l2"]

#: probabilities are clipped at this value before a logarithm (KL of a zero entry)
PROB_FLOOR = 1e-12
#: rows per block when a distance needs all (query, item, class) differences
_BLOCK = 256


# ---------------------------------------------------------------------------------------------
# The semantic space: multiclass logistic regression


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed after subtracting each row's maximum (no overflow)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def label_targets(labels, n: int) -> np.ndarray:
    """``(N, C)`` target distributions: one-hot rows, multi-hot rows divided by their sum."""
    member = label_membership(labels, n)
    return member / member.sum(axis=1, keepdims=True)


def logistic_objective(params: np.ndarray, x: np.ndarray, targets: np.ndarray, c: float,
                       fit_intercept: bool) -> tuple[float, np.ndarray]:
    """``1/2 |W|^2 + C sum_i CE_i`` and its gradient, for the flattened ``[W; b]``."""
    d, k = x.shape[1], targets.shape[1]
    w = params[:d * k].reshape(d, k)
    b = params[d * k:] if fit_intercept else np.zeros(k)
    z = x @ w + b
    zmax = z.max(axis=1, keepdims=True)
    log_norm = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    cross_entropy = float((targets.sum(axis=1) * log_norm).sum() - (targets * z).sum())
    value = 0.5 * float((w * w).sum()) + c * cross_entropy
    resid = softmax(z) * targets.sum(axis=1, keepdims=True) - targets
    grad_w = w + c * (x.T @ resid)
    if fit_intercept:
        return value, np.concatenate([grad_w.ravel(), c * resid.sum(axis=0)])
    return value, grad_w.ravel()


class SemanticClassifier:
    """L2-regularised multinomial logistic regression onto the class-probability simplex."""

    def __init__(self, C: float = 1.0, fit_intercept: bool = True, max_iter: int = 1000,
                 tol: float = 1e-8):
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, x: np.ndarray, targets: np.ndarray) -> "SemanticClassifier":
        d, k = x.shape[1], targets.shape[1]
        start = np.zeros(d * k + (k if self.fit_intercept else 0))
        res = scipy.optimize.minimize(
            logistic_objective, start, args=(x, targets, float(self.C), self.fit_intercept),
            jac=True, method="L-BFGS-B",
            options={"maxiter": int(self.max_iter), "gtol": self.tol, "ftol": 1e-12})
        if not res.success:
            log.debug("logistic regression stopped after %d iterations: %s", res.nit,
                      res.message)
        self.coef_ = res.x[:d * k].reshape(d, k)
        self.intercept_ = res.x[d * k:] if self.fit_intercept else np.zeros(k)
        self.n_iter_ = int(res.nit)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_ + self.intercept_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(N, C)`` posterior class probabilities; each row sums to one."""
        return softmax(self.decision_function(x))


# ---------------------------------------------------------------------------------------------
# Distances between semantic vectors


def _centre_unit(p: np.ndarray, centre: bool) -> np.ndarray:
    v = p - p.mean(axis=1, keepdims=True) if centre else p
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def _blockwise(a: np.ndarray, b: np.ndarray, pair_distance) -> np.ndarray:
    out = np.empty((a.shape[0], b.shape[0]))
    for start in range(0, a.shape[0], _BLOCK):
        block = a[start:start + _BLOCK]
        out[start:start + len(block)] = pair_distance(block[:, None, :] - b[None, :, :])
    return out


def distance_matrix(a, b, distance: str) -> np.ndarray:
    """``(len(a), len(b))`` distances (smaller = closer) between rows of ``a`` and ``b``.

    ``ncorr`` and ``ncorr-centred`` are returned as ``1 - correlation`` so that every measure
    is a distance; ``kl`` is ``KL(a_i | b_j) + KL(b_j | a_i)`` on probability rows (entries clipped
    at ``PROB_FLOOR`` and renormalised, so a zero probability stays finite).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"distance needs two row matrices of one width, got {a.shape} and"
                         f" {b.shape}")
    if distance in ("ncorr", "ncorr-centred"):
        centre = distance == "ncorr-centred"
        return 1.0 - _centre_unit(a, centre) @ _centre_unit(b, centre).T
    if distance == "kl":
        if (a < 0).any() or (b < 0).any():
            raise ValueError("the kl distance needs probability vectors (no negative entries)")
        pa = np.clip(a, PROB_FLOOR, None)
        pb = np.clip(b, PROB_FLOOR, None)
        pa /= pa.sum(axis=1, keepdims=True)
        pb /= pb.sum(axis=1, keepdims=True)
        la, lb = np.log(pa), np.log(pb)
        # sum_c (p_c - q_c)(log p_c - log q_c), expanded into matrix products
        own = (pa * la).sum(axis=1)[:, None] + (pb * lb).sum(axis=1)[None, :]
        return np.maximum(own - pa @ lb.T - la @ pb.T, 0.0)
    if distance == "l1":
        return _blockwise(a, b, lambda diff: np.abs(diff).sum(axis=2))
    if distance == "l2":
        sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"unknown distance {distance!r}; use one of {', '.join(DISTANCES)}")


def similarity_matrix(text_vectors, image_vectors, distance: str) -> np.ndarray:
    """``(texts, images)`` retrieval scores: minus the distance (higher = more similar).

    One matrix serves both directions (its rows rank images for a text query, its columns
    texts for an image query), which is why every measure offered is symmetric.
    """
    return -distance_matrix(text_vectors, image_vectors, distance)


# ---------------------------------------------------------------------------------------------
# The two methods


class _SemanticParams(Params):
    distance: Distance = Field(
        "ncorr", description="ranking measure between semantic vectors: ncorr (normalised"
                             " correlation, i.e. cosine: the paper's measure), ncorr-centred"
                             " (each vector minus its mean first: Pearson correlation), kl"
                             " (symmetrised Kullback-Leibler), l1, l2")
    C: float = Field(1.0, gt=0.0, description="inverse regularisation of each logistic"
                                              " regression: 1/2 |W|^2 + C sum_i CE_i"
                                              " (LIBLINEAR's and scikit-learn's C; 1 is their"
                                              " default)")
    fit_intercept: bool = Field(True, description="learn an unpenalised bias per class")
    max_iter: int = Field(1000, ge=1, description="L-BFGS iterations per classifier")
    tol: float = Field(1e-8, gt=0.0, description="L-BFGS gradient tolerance")


class SMParams(_SemanticParams):
    """Params of ``sm``."""


class SCMParams(_SemanticParams):
    """Params of ``scm``: the semantic classifiers plus the CCA that precedes them."""

    n_components: int | None = Field(
        None, ge=1, description="canonical pairs kept; default min(image dim, text dim), as in"
                                " correlation matching")
    cca_reg: float = Field(1e-4, ge=0.0, description="ridge of the CCA covariances, as a"
                                                     " fraction of their mean variance (cca's"
                                                     " reg)")


class _SemanticMatching(Configured, CrossModalMethod):
    """Shared part: one classifier per modality on (possibly projected) features."""

    def _classifier(self) -> SemanticClassifier:
        return SemanticClassifier(self.C, self.fit_intercept, self.max_iter, self.tol)

    def _fit_classifiers(self, x: np.ndarray, y: np.ndarray, labels) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; use one of"
                             f" {', '.join(DISTANCES)}")
        targets = label_targets(labels, x.shape[0])
        if targets.shape[1] < 2:
            raise ValueError("semantic matching needs at least two classes in the labels")
        self.image_classifier_ = self._classifier().fit(x, targets)
        self.text_classifier_ = self._classifier().fit(y, targets)
        self.n_classes_ = targets.shape[1]

    def _image_space(self, x: np.ndarray) -> np.ndarray:
        return x

    def _text_space(self, y: np.ndarray) -> np.ndarray:
        return y

    def transform_image(self, image_feats) -> np.ndarray:
        """Images to their ``(N, C)`` posterior class probabilities."""
        check_fitted(self, "image_classifier_")
        x = check_width("image_feats", image_feats, self.n_features_in_[0])
        return self.image_classifier_.predict_proba(self._image_space(x))

    def transform_text(self, text_feats) -> np.ndarray:
        """Texts to their ``(N, C)`` posterior class probabilities."""
        check_fitted(self, "text_classifier_")
        y = check_width("text_feats", text_feats, self.n_features_in_[1])
        return self.text_classifier_.predict_proba(self._text_space(y))

    def similarity(self, image_common, text_common) -> np.ndarray:
        """``(texts, images)`` scores: minus the configured distance between semantic vectors."""
        return similarity_matrix(text_common, image_common, self.distance)


class SM(_SemanticMatching):
    """Semantic matching: logistic regression per modality into class probabilities, ranked by a
    named distance (Rasiwasia et al. 2010).

    Semantic matching: logistic regression per modality on the original features.

    Learned: ``image_classifier_``, ``text_classifier_`` (``coef_``, ``intercept_``),
    ``n_classes_``.
    """

    params_model = SMParams

    def fit(self, image_feats, text_feats, labels) -> "SM":
        x, y = check_pairs(image_feats, text_feats)
        self._fit_classifiers(x, y, labels)
        self.n_features_in_ = (x.shape[1], y.shape[1])
        return self


class SCM(_SemanticMatching):
    """Semantic correlation matching: CCA, then logistic regression into class probabilities
    (Rasiwasia et al. 2010).

    Semantic correlation matching: CCA, then logistic regression on the canonical variates.

    Learned: ``cca_`` (a fitted :class:`~plugins.baselines.cca.CCA`) and the classifiers.
    """

    params_model = SCMParams

    def fit(self, image_feats, text_feats, labels) -> "SCM":
        x, y = check_pairs(image_feats, text_feats)
        self.cca_ = CCA(n_components=self.n_components, reg=self.cca_reg).fit(x, y)
        self._fit_classifiers(self.cca_.transform_image(x), self.cca_.transform_text(y), labels)
        self.n_features_in_ = (x.shape[1], y.shape[1])
        return self

    def _image_space(self, x: np.ndarray) -> np.ndarray:
        return self.cca_.transform_image(x)

    def _text_space(self, y: np.ndarray) -> np.ndarray:
        return self.cca_.transform_text(y)
