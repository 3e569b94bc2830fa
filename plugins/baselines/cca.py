"""Regularised canonical correlation analysis (Hotelling 1936), as correlation matching.

Rasiwasia et al. (ACM MM 2010) retrieve across modalities by projecting both sides onto the
canonical directions and ranking by normalised correlation (cosine) there; this is the
"CCA" baseline of DAER's Table 1.

Maths: with centred training matrices X (N x Dx) and Y (N x Dy) and covariances
Cxx, Cyy, Cxy, find A, B maximising corr(XA, YB) column by column. With
Wx = (Cxx + rx I)^-1/2 and Wy likewise, the SVD  Wx Cxy Wy = U S V^T  gives A = Wx U,
B = Wy V and canonical correlations S. The ridge is a fraction ``reg`` of the mean variance,
so it does not depend on the features' scale.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from daer_core.interfaces.methods import Configured, CrossModalMethod
from registry import Params

from ._common import CentredLinearProjections, cca_from_covariances, check_pairs


class CCAParams(Params):
    n_components: int | None = Field(
        None, ge=1, description="canonical pairs kept; default min(image dim, text dim)"
                                " (capped by the ranks of the covariances)")
    reg: float = Field(1e-4, ge=0.0, description="ridge added to each covariance, as a"
                                                 " fraction of its mean variance")
    center: bool = Field(True, description="centre both modalities by their training means"
                                           " before projecting")


class CCA(Configured, CentredLinearProjections, CrossModalMethod):
    """Regularised linear CCA; correlation matching (Rasiwasia et al. 2010).

    Linear CCA; ``correlations_`` holds the canonical correlations on the training pairs.
    """

    params_model = CCAParams

    def fit(self, image_feats, text_feats, labels=None) -> "CCA":
        """Learn the canonical directions; ``labels`` are accepted and ignored (unsupervised)."""
        x, y = check_pairs(image_feats, text_feats)
        n = x.shape[0]
        self.image_mean_ = x.mean(axis=0) if self.center else np.zeros(x.shape[1])
        self.text_mean_ = y.mean(axis=0) if self.center else np.zeros(y.shape[1])
        xc, yc = x - self.image_mean_, y - self.text_mean_
        self.image_weights_, self.text_weights_, self.correlations_ = cca_from_covariances(
            xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n, self.reg, self.n_components)
        return self
