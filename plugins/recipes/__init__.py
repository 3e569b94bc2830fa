"""Training recipes (kind ``recipe``): how a method's parameters are trained on the shared
trainer. ``daer-three-stage`` is Algorithm 1 of the DAER paper, the default of every run.
"""
from registry import hookimpl

from . import acmr, cm_gans, contrastive, dscmr, fgcrossnet, mcsm, rerank
from .daer_three_stage import DAERThreeStageParams, make_daer_three_stage


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("recipe", "daer-three-stage", factory=make_daer_three_stage,
                 params=DAERThreeStageParams)
    dscmr.register(registry)
    acmr.register(registry)
    cm_gans.register(registry)
    fgcrossnet.register(registry)
    mcsm.register(registry)
    contrastive.register(registry)
    rerank.register(registry)
