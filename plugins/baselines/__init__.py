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
    registry.add("method", "cca", factory=CCA, params=CCAParams)
    registry.add("method", "kcca", factory=KCCA, params=KCCAParams)
    registry.add("method", "mvda-vc", factory=MvDAVC, params=MvDAVCParams)
    registry.add("method", "jrl", factory=JRL, params=JRLParams)
    registry.add("method", "sm", factory=SM, params=SMParams)
    registry.add("method", "scm", factory=SCM, params=SCMParams)
