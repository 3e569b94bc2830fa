"""Training recipes (kind ``recipe``): how a method's parameters are trained on the shared
trainer. ``daer-three-stage`` is Algorithm 1 of the DAER paper, the default of every run.

MCSM's networks (``mcsm-*`` encoders and the ``mcsm-fusion`` relation) are registered here
too: they exist for the ``mcsm`` recipe. Every component of this plugin is listed below, in
the one hook (docs/writing-a-plugin.md: one registration style).
"""
from registry import hookimpl

from .acmr import ACMRParams, make_acmr
from .cm_gans import CMGANsParams, make_cm_gans
from .contrastive import ContrastiveParams, VSEParams, make_contrastive, make_vse
from .daer_three_stage import DAERThreeStageParams, make_daer_three_stage
from .dscmr import DSCMRParams, make_dscmr
from .fgcrossnet import FGCrossNetParams, make_fgcrossnet
from .mcsm import MCSMParams, make_mcsm
from .mcsm_networks import (MCSMFusionParams, MCSMImageParams, MCSMVectorParams,
                            MCSMWordsParams, make_mcsm_fusion, make_mcsm_image,
                            make_mcsm_words, make_vector_image, make_vector_text)
from .rerank import ContrastiveRerankParams, make_contrastive_rerank

MCSM_VECTOR = ("MCSM networks on feature vectors: recurrent attention over the vector's chunks "
               "(own space) + MLP projection (other space), [image-space | text-space] output")


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("recipe", "daer-three-stage", factory=make_daer_three_stage,
                 params=DAERThreeStageParams, default=True)
    registry.add("recipe", "dscmr", factory=make_dscmr, params=DSCMRParams,
                 summary="DSCMR (Zhen et al. 2019): J1 label space + alpha J2 discrimination + "
                         "beta J3 modality invariance, one joint stage")
    registry.add("recipe", "acmr", factory=make_acmr, params=ACMRParams)
    registry.add("recipe", "cm-gans", factory=make_cm_gans, params=CMGANsParams)
    registry.add("recipe", "fgcrossnet", factory=make_fgcrossnet, params=FGCrossNetParams)
    registry.add("recipe", "mcsm", factory=make_mcsm, params=MCSMParams)
    registry.add("text_encoder", "mcsm-vector", factory=make_vector_text,
                 params=MCSMVectorParams, summary=MCSM_VECTOR)
    registry.add("image_encoder", "mcsm-vector", factory=make_vector_image,
                 params=MCSMVectorParams, summary=MCSM_VECTOR)
    # their CNN and their word network are references in their params (`cnn`, `words`):
    # the registry builds them, and their defaults (timm, word2vec-lstm) are requirements
    registry.add("image_encoder", "mcsm-image", factory=make_mcsm_image, params=MCSMImageParams)
    registry.add("text_encoder", "mcsm-words", factory=make_mcsm_words, params=MCSMWordsParams)
    registry.add("relation", "mcsm-fusion", factory=make_mcsm_fusion, params=MCSMFusionParams)
    registry.add("recipe", "contrastive", factory=make_contrastive, params=ContrastiveParams)
    registry.add("recipe", "vse", factory=make_vse, params=VSEParams)
    registry.add("recipe", "contrastive-rerank", factory=make_contrastive_rerank,
                 params=ContrastiveRerankParams)
