"""Baseline cross-modal methods of DAER's Table 1 (kind ``method``).

Each method is scikit-learn shaped (constructor arguments are the params; ``fit`` learns;
``transform_image`` / ``transform_text`` map into a common space ranked by ``similarity``:
cosine, or for ``sm`` / ``scm`` a distance between class-probability vectors)
and is registered with its pydantic params model, so ``registry.create("method", "cca",
{"reg": 1e-3})`` builds ``CCA(reg=1e-3)``. See docs/baselines.md.
"""
from __future__ import annotations

from registry import hookimpl

from .cca import CCA, CCAParams
from .jrl import JRL, JRLParams
from .kcca import KCCA, KCCAParams
from .mvda_vc import MvDAVC, MvDAVCParams
from .semantic import SCM, SM, SCMParams, SMParams

__all__ = ["CCA", "KCCA", "MvDAVC", "JRL", "SM", "SCM", "CCAParams", "KCCAParams",
           "MvDAVCParams", "JRLParams", "SMParams", "SCMParams"]


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("method", "cca", factory=CCA, params=CCAParams,
                 summary="Regularised linear CCA; correlation matching (Rasiwasia et al. 2010).")
    registry.add("method", "kcca", factory=KCCA, params=KCCAParams,
                 summary="Kernel CCA (Gaussian or linear) with a Nyström low-rank"
                         " approximation, memory independent of the training-set size.")
    registry.add("method", "mvda-vc", factory=MvDAVC, params=MvDAVCParams,
                 summary="Multi-view discriminant analysis with view consistency"
                         " (Kan et al., TPAMI 2016).")
    registry.add("method", "jrl", factory=JRL, params=JRLParams,
                 summary="Joint representation learning with l2,1 sparsity and a"
                         " semi-supervised joint graph (Zhai et al., TCSVT 2014).")
    registry.add("method", "sm", factory=SM, params=SMParams,
                 summary="Semantic matching: logistic regression per modality into class"
                         " probabilities, ranked by a named distance (Rasiwasia et al. 2010).")
    registry.add("method", "scm", factory=SCM, params=SCMParams,
                 summary="Semantic correlation matching: CCA, then logistic regression into"
                         " class probabilities (Rasiwasia et al. 2010).")
