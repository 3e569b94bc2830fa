"""Two-tower recipes of today's retrieval work: ``contrastive`` (symmetric InfoNCE with a
learnable temperature, as CLIP trains) and ``vse`` (a hinge on the hardest negative of the
batch, VSE++ by Faghri et al. 2018).

Both train the run's two encoders into one space (both ``out_dim`` equal) in one stage and
score a batch's ``B x B`` cosine matrix ``S`` (texts x images, row i = pair i): the diagonal
holds the positives, everything else in a row or column is a negative — except two captions
of one image (several captions per image: their images are the same picture, never a
negative), and the pairs a ``negatives`` policy takes out: ``same-label`` leaves pairs that
share a class out of each other's negatives (category-level data, where another pair of the
class is no mistake).
Retrieval ranks by the same cosine (the ``cosine`` relation).

* ``contrastive``: ``(CE(s S, diag) + CE(s S^T, diag)) / 2`` with ``s = exp(log_scale)``,
  the inverse temperature, learned from ``1 / temperature`` and clamped at ``max_scale``
  (CLIP: 1/0.07 at the start, at most 100). The scale lives in the recipe's extra module
  ``scale`` (checkpointed, dropped from the final weights: ranking does not need it).
* ``vse``: for each pair, ``[margin - S_ii + S_ij]_+`` over the texts ``j`` of the batch and
  ``[margin - S_ii + S_ji]_+`` over its images — only the hardest of each when ``hardest``
  (VSE++'s max of hinges), every one of them otherwise (VSE0's sum) — summed over the batch
  as VSE++ does (``reduction: mean`` divides by B).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.interfaces import StageSpec, TrainBatch, TrainingRecipe
from registry import Params

from .daer_three_stage import common_space_dim

NegativesPolicy = Literal["all", "same-label"]


class ContrastiveParams(Params):
    """Params of the ``contrastive`` recipe (CLIP's defaults)."""

    temperature: float = Field(0.07, gt=0, description="initial temperature; the inverse "
                               "scale 1/T multiplies the cosines")
    learnable: bool = Field(True, description="learn the temperature (as log scale)")
    max_scale: float = Field(100.0, gt=0, description="upper bound of the learned 1/T")
    negatives: NegativesPolicy = Field(
        "all", description="all: every other pair of the batch is a negative; same-label: "
                           "pairs sharing a class are not each other's negatives")


class VSEParams(Params):
    """Params of the ``vse`` recipe (VSE++'s defaults)."""

    margin: float = Field(0.2, ge=0, description="hinge margin on cosines")
    hardest: bool = Field(True, description="only the hardest negative per query (VSE++); "
                                            "false = every negative (VSE0)")
    reduction: Literal["sum", "mean"] = Field("sum", description="over the batch's pairs "
                                                                "(VSE++ sums)")
    negatives: NegativesPolicy = Field(
        "all", description="all: every other pair of the batch is a negative; same-label: "
                           "pairs sharing a class are not each other's negatives")


def excluded(labels: torch.Tensor, policy: str, groups: torch.Tensor | None = None
             ) -> torch.Tensor:
    """``(B, B)`` True where pair j is *not* a negative of pair i (the diagonal included).

    Two captions of one image (equal ``groups``, see :attr:`TrainBatch.groups`) are never
    each other's negatives, whatever the policy: the other caption's image *is* the positive.
    """
    b = labels.shape[0]
    out = torch.eye(b, dtype=torch.bool, device=labels.device)
    if groups is not None:
        out |= groups.unsqueeze(0) == groups.unsqueeze(1)
    if policy == "same-label":
        out |= (labels.float() @ labels.float().T) > 0
    return out


def cosine_matrix(text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``S[i, j] = cos(text_i, image_j)`` in float32."""
    return F.normalize(text.float(), dim=1) @ F.normalize(image.float(), dim=1).T


def info_nce(sim: torch.Tensor, scale: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Symmetric cross entropy of the diagonal in ``scale * sim``, rows and columns;
    ``skip`` (off the diagonal) leaves entries out of the softmax."""
    logits = scale * sim
    off = skip & ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    logits = logits.masked_fill(off, float("-inf"))
    target = torch.arange(len(sim), device=sim.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def vse_loss(sim: torch.Tensor, margin: float, hardest: bool, skip: torch.Tensor,
             reduction: str = "sum") -> torch.Tensor:
    """VSE hinge: texts against the images of other pairs and images against their texts."""
    pos = sim.diagonal()
    # row i: text i against the images j; column j: image j against the texts i
    cost_image = F.relu(margin - pos.unsqueeze(1) + sim).masked_fill(skip, 0.0)
    cost_text = F.relu(margin - pos.unsqueeze(0) + sim).masked_fill(skip, 0.0)
    if hardest:
        per_pair = cost_image.max(dim=1).values + cost_text.max(dim=0).values
    else:
        per_pair = cost_image.sum(dim=1) + cost_text.sum(dim=0)
    return per_pair.sum() if reduction == "sum" else per_pair.mean()


class LogitScale(nn.Module):
    """The learned inverse temperature, as its log (kept positive), clamped when read."""

    def __init__(self, temperature: float, learnable: bool, max_scale: float):
        super().__init__()
        value = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)
        self.max_log = math.log(max_scale)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()


class _TwoTower(TrainingRecipe):
    name = ""
    uses_labels = False  # (negatives: same-label reads them when there are any)

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        return [model.text_encoder, model.image_encoder, *extras.values()]

    def _similarity(self, model: nn.Module, batch: TrainBatch) -> torch.Tensor:
        return cosine_matrix(model.encode_text(batch.text), model.encode_image(batch.images))


class Contrastive(_TwoTower):
    """Symmetric InfoNCE with a learnable temperature (see the module)."""

    stages = (StageSpec("contrastive", "contrastive training", validation="retrieval",
                        min_batch=2),)

    def __init__(self, params: ContrastiveParams | None = None):
        self.params = params or ContrastiveParams()

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        common_space_dim(model, "contrastive")
        p = self.params
        return {"scale": LogitScale(p.temperature, p.learnable, p.max_scale)}

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        sim = self._similarity(model, batch)
        scale = extras["scale"]()
        loss = info_nce(sim, scale, excluded(batch.labels, self.params.negatives, batch.groups))
        return {"loss": loss, "scale": scale.detach()}


class VSE(_TwoTower):
    """Hinge on the hardest in-batch negative (see the module)."""

    stages = (StageSpec("vse", "VSE training", validation="retrieval", min_batch=2),)

    def __init__(self, params: VSEParams | None = None):
        self.params = params or VSEParams()

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        common_space_dim(model, "vse")
        return {}

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        p = self.params
        sim = self._similarity(model, batch)
        loss = vse_loss(sim, p.margin, p.hardest, excluded(batch.labels, p.negatives, batch.groups),
                        p.reduction)
        return {"loss": loss}


def make_contrastive(params: ContrastiveParams) -> Contrastive:
    """contrastive: symmetric InfoNCE of a two-tower model with a learnable temperature
    (CLIP-style), one stage; retrieval by cosine.
    """
    return Contrastive(params)


def make_vse(params: VSEParams) -> VSE:
    """vse: hinge on the hardest in-batch negative both ways (VSE++), one stage; retrieval
    by cosine.
    """
    return VSE(params)
