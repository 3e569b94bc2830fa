"""``mcsm`` — Modality-specific Cross-modal Similarity Measurement with recurrent attention
network (Peng, Qi & Yuan, IEEE TIP 2018).

One semantic space per modality instead of one common space (the networks, the embedding
layout and the fusion are in :mod:`plugins.recipes.mcsm_networks`):

* **image space** — the image's recurrent attention embedding ``e^i = sum_j a_j h_j`` (an LSTM
  over its regions, attention over the states) against the text projected into the space,
  ``q^t``: ``sim_i(i, t) = <e^i, q^t>``;
* **text space** — the text's recurrent attention embedding ``e^t`` (an LSTM over its words,
  attention) against the image projected into the space, ``q^i``: ``sim_t(i, t) = <e^t, q^i>``.

Each space is trained with the paper's attention based joint embedding loss, a bidirectional
ranking loss over matched and mismatched pairs (:func:`ranking_loss`):

``L_x = 1/N sum_n [max(0, margin - sim_x(i_n, t_n) + sim_x(i_n, t_n^-))
                  + max(0, margin - sim_x(i_n, t_n) + sim_x(i_n^-, t_n))]``

the first term with the image as anchor (its own text is the positive, a mismatched text the
negative), the second with the text as anchor. Mismatched = sharing no label with the anchor;
``negatives: mean`` averages the hinge over every mismatched item of the batch (the expected
value of the paper's one sampled negative per pair), ``hardest`` keeps the largest. The
similarities are cosines (the paper's inner products of the embeddings, normalised; see
``docs/baselines.md``).

The loss of the stage is ``image_space_weight L_i + text_space_weight L_t``. The two spaces'
networks share no parameter except the image backbone of ``mcsm-image`` (and the frozen word
vectors of ``mcsm-words``), so with the vector encoders the sum trains the two networks exactly
as the paper's two separate trainings would. Retrieval uses the adaptive fusion of the two
similarities (the ``mcsm-fusion`` relation); the fusion has no parameters and is not trained.

One stage, ``mcsm``, one optimizer step per batch over both encoders.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import StageSpec, TrainBatch, TrainingRecipe
from registry import Params

from .daer_three_stage import common_space_dim
from .mcsm_networks import MCSMFusion, split_spaces


class MCSMParams(Params):
    """Params of the ``mcsm`` recipe; the stage is configured under ``train.stages.mcsm``."""

    margin: float = Field(0.2, ge=0, description="margin alpha of the ranking loss of each "
                          "space (on cosine similarities; the paper's value is not stated in "
                          "the sources read, 0.2 is the usual value for cosines)")
    negatives: Literal["mean", "hardest"] = Field(
        "mean", description="mismatched items of the batch (sharing no label with the anchor):"
        " mean = hinge averaged over all of them (the paper samples one mismatched item per "
        "pair), hardest = the largest hinge only")
    image_space_weight: float = Field(1.0, ge=0, description="weight of L_i, the joint "
                                      "embedding loss of the image semantic space")
    text_space_weight: float = Field(1.0, ge=0, description="weight of L_t, the joint "
                                     "embedding loss of the text semantic space")


def mismatched(labels: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` bool: items i and j share no label (j may serve as i's negative)."""
    lab = labels.float()
    return (lab @ lab.T) == 0


def _per_anchor(hinge: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Rows are anchors: mean (or max) of the hinge over each row's negatives (0 if none)."""
    hinge = hinge.masked_fill(~mask, 0.0)
    if how == "hardest":
        return hinge.amax(dim=1)
    return hinge.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def ranking_loss(sim: torch.Tensor, labels: torch.Tensor, margin: float,
                 negatives: str = "mean") -> torch.Tensor:
    """The joint embedding loss of one space from ``sim[a, b] = sim(image a, text b)`` of a
    batch of pairs (row n and column n are pair n): image anchors against mismatched texts
    plus text anchors against mismatched images, each averaged over the anchors."""
    pos = sim.diagonal()
    mask = mismatched(labels)
    image_anchor = torch.relu(margin - pos.unsqueeze(1) + sim)       # [n, j]: text j negative
    text_anchor = torch.relu(margin - pos.unsqueeze(1) + sim.T)      # [n, j]: image j negative
    return (_per_anchor(image_anchor, mask, negatives).mean()
            + _per_anchor(text_anchor, mask, negatives).mean())


def space_sims(image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, B)`` cosine matrices ``[image a, text b]`` in the image space and the text space."""
    ii, it = split_spaces(image.float())
    ti, tt = split_spaces(text.float())
    norm = nn.functional.normalize
    return norm(ii, dim=-1) @ norm(ti, dim=-1).T, norm(it, dim=-1) @ norm(tt, dim=-1).T


class MCSM(TrainingRecipe):
    """The two semantic spaces' joint embedding losses (see module)."""

    stages = (StageSpec("mcsm", "MCSM joint embedding in both semantic spaces",
                        validation="retrieval", min_batch=2),)

    def __init__(self, params: MCSMParams | None = None):
        self.params = params or MCSMParams()

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        dim = common_space_dim(model, "mcsm")
        if dim % 2:
            raise ConfigError(f"train.recipe 'mcsm' reads [image-space | text-space] embeddings,"
                              f" but the encoders output an odd width {dim}; use the mcsm-* "
                              "encoders")
        relation = getattr(model, "relation", None)
        if relation is not None and not isinstance(relation, MCSMFusion):
            raise ConfigError("train.recipe 'mcsm' retrieves with the fusion of its two "
                              "spaces: set pipeline.relation to 'mcsm-fusion'")
        return {}

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        return [model.text_encoder, model.image_encoder]

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        p = self.params
        sim_i, sim_t = space_sims(model.encode_image(batch.images), model.encode_text(batch.text))
        l_i = ranking_loss(sim_i, batch.labels, p.margin, p.negatives)
        l_t = ranking_loss(sim_t, batch.labels, p.margin, p.negatives)
        return {"loss": p.image_space_weight * l_i + p.text_space_weight * l_t,
                "image_space": l_i, "text_space": l_t}


def make_mcsm(params: MCSMParams) -> MCSM:
    """MCSM (Peng, Qi & Yuan, TIP 2018): an image space and a text space, each trained with a
    bidirectional ranking loss; retrieval by the adaptive fusion of their similarities
    """
    return MCSM(params)
