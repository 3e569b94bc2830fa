"""``contrastive-rerank`` — DAER's relation head as the re-ranker of a contrastive first stage.

Instance-level retrieval systems (ALBEF, BLIP, X-VLM; LAVIS's evaluation) rank a gallery in
two stages: a cheap two-tower similarity ranks everything, and a cross-modal matching head
re-scores each query's top ``k_test``. This recipe builds that from daer's components:

1. ``contrastive``: the two encoders learn one space with symmetric InfoNCE and a learnable
   temperature (exactly the ``contrastive`` recipe); validation ranks by the cosine of the
   two embeddings, since the relation head is untrained at this point.
2. ``relation``: the encoders stay as stage 1 left them (no gradient, batch-norm statistics
   and dropout in eval mode), and the pipeline's fusion, enhancement and relation head (DAER:
   concat, signed power, MLP) learn the pipeline's loss (Frobenius, Eq. 11) against
   **instance** targets: ``T[q, p] = 1`` when text q describes image p — each image its own
   class, as the issue of DAER at instance level asks — or, with ``target: label``, when
   they share a class (the paper's target).

Evaluation with ``evaluate.rerank_k: K`` ranks by the cosine and re-scores each query's top
K by the relation head, and reports both figures (daer_core/evaluation/protocol.py); without
it the relation head scores every pair.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from daer_core.interfaces import StageSpec, TrainBatch

from .contrastive import Contrastive, ContrastiveParams
from .daer_three_stage import shared_label_target


class ContrastiveRerankParams(ContrastiveParams):
    """Params of ``contrastive-rerank``: the first stage's (``contrastive``'s) and the
    relation stage's target."""

    target: Literal["image", "label"] = Field(
        "image", description="relation stage target: image = 1 only for a caption and its own"
        " image (instance level); label = 1 for pairs sharing a class (the paper's Eq. 11)")


class ContrastiveRerank(Contrastive):
    """Contrastive first stage, then the relation head on frozen encoders (see the module)."""

    stages = (
        StageSpec("contrastive", "stage 1/2 contrastive first stage", validation="retrieval",
                  scorer="cosine", min_batch=2),
        StageSpec("relation", "stage 2/2 relation head (re-ranker)", validation="retrieval",
                  min_batch=2),
    )

    def __init__(self, params: ContrastiveRerankParams | None = None):
        super().__init__(params or ContrastiveRerankParams())

    @property
    def uses_labels(self) -> bool:  # type: ignore[override]
        return self.params.target == "label"

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        if model.two_tower:
            from daer_core.errors import ConfigError
            raise ConfigError(
                f"train.recipe 'contrastive-rerank' trains a relation head to re-rank, but the "
                f"pipeline's relation {model.names.get('relation', '?')!r} is a two-tower "
                "score; use a pair relation head (e.g. pipeline.relation: mlp with fusion: "
                "concat)")
        return super().setup(model, num_classes, multi_label)

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        if stage == "contrastive":
            return super().trainable(stage, step, model, extras)
        return [m for m in (model.fusion, model.enhancement, model.relation) if m is not None]

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        if stage == "contrastive":
            return super().losses(stage, step, model, extras, batch)
        # the first stage is fixed: its encoders run as at evaluation
        model.text_encoder.eval()
        model.image_encoder.eval()
        with torch.no_grad():
            t = model.encode_text(batch.text)
            i = model.encode_image(batch.images)
        scores = model.pair_scores(t, i).float()
        if self.params.target == "label":
            target = shared_label_target(batch.labels, batch.labels)
        else:
            target = batch.same_image().to(scores.dtype)
        return {"loss": model.loss(scores, target)}


def make_contrastive_rerank(params: ContrastiveRerankParams) -> ContrastiveRerank:
    """contrastive-rerank: a contrastive two-tower first stage, then DAER's relation head
    trained on instance targets to re-rank its top candidates (evaluate.rerank_k).
    """
    return ContrastiveRerank(params)
