"""The ``mcsm-fusion`` relation: MCSM's adaptive fusion of the image-space and the
text-space similarities (see :mod:`plugins.recipes.mcsm_networks` for the layout it reads).

Kept apart from the encoders: it scores embeddings, whichever mcsm-* encoders made them.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from daer_core.errors import DimensionMismatchError
from daer_core.interfaces import TwoTowerRelation
from registry import Params

Fusion = Literal["adaptive", "image", "text", "sum"]


def minmax_cosine(sim: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation of a cosine similarity over its range ``[-1, 1]``: ``(s+1)/2``."""
    return (sim + 1.0) / 2.0


def adaptive_fusion(sim_i: torch.Tensor, sim_t: torch.Tensor, how: Fusion = "adaptive"
                    ) -> torch.Tensor:
    """``Sim = r_t * sim_i + r_i * sim_t`` with ``r_x`` the min-max normalised ``sim_x``: a pair
    similar in one space weighs more in the other. ``image`` / ``text`` keep one space's
    similarity (the paper's single-space variants), ``sum`` adds the two unweighted."""
    if how == "image":
        return sim_i
    if how == "text":
        return sim_t
    if how == "sum":
        return sim_i + sim_t
    return minmax_cosine(sim_t) * sim_i + minmax_cosine(sim_i) * sim_t


def split_spaces(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image-space and text-space halves of ``(N, 2 dim)`` MCSM embeddings."""
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


def space_similarities(text: torch.Tensor, image: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sim_i, sim_t)``, each ``(Q, P)``: cosines of every text with every image in the
    image space and in the text space."""
    ti, tt = split_spaces(text)
    ii, it = split_spaces(image)
    sim_i = F.normalize(ti.float(), dim=-1) @ F.normalize(ii.float(), dim=-1).T
    sim_t = F.normalize(tt.float(), dim=-1) @ F.normalize(it.float(), dim=-1).T
    return sim_i, sim_t


class MCSMFusionParams(Params):
    """Params of the ``mcsm-fusion`` relation."""

    fusion: Fusion = Field(
        "adaptive", description="adaptive: r_t*sim_i + r_i*sim_t (the paper's fusion); image / "
        "text: one space's similarity only; sum: sim_i + sim_t")


class MCSMFusion(TwoTowerRelation):
    """Scores texts against images by the adaptive fusion of the two modality-specific
    similarities (see the module docstring). No parameters."""

    def __init__(self, params: MCSMFusionParams, text_dim: int, image_dim: int):
        super().__init__()
        if int(text_dim) != int(image_dim) or int(text_dim) % 2:
            raise DimensionMismatchError(
                f"relation 'mcsm-fusion' reads [image-space | text-space] embeddings of one even "
                f"width from both encoders, but the text encoder outputs {text_dim} and the "
                f"image encoder {image_dim}; use the mcsm-* encoders with one dim")
        self.params = params
        self.in_dim = int(text_dim)

    def score(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """All pairs: ``(Q, 2d), (P, 2d) -> (Q, P)``."""
        sim_i, sim_t = space_similarities(text, image)
        return adaptive_fusion(sim_i, sim_t, self.params.fusion)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Paired rows only: ``(N, 2d), (N, 2d) -> (N,)``."""
        ti, tt = split_spaces(text)
        ii, it = split_spaces(image)
        return adaptive_fusion(F.cosine_similarity(ti.float(), ii.float(), dim=-1),
                               F.cosine_similarity(tt.float(), it.float(), dim=-1),
                               self.params.fusion)


def make_mcsm_fusion(params: MCSMFusionParams, fused_dim: int | None = None, text_dim: int = 0,
                     image_dim: int = 0) -> MCSMFusion:
    """two-tower: MCSM's adaptive fusion r_t*sim_i + r_i*sim_t of the image-space and the
    text-space cosine similarities ([image-space | text-space] embeddings from mcsm-* encoders)
    """
    return MCSMFusion(params, text_dim=text_dim, image_dim=image_dim)
