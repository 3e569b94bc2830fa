"""``daer-three-stage`` — Algorithm 1 of the DAER paper as a training recipe.

1. ``text``: the text encoder plus a linear classifier over the dataset's classes (cross
   entropy; binary cross entropy for multi-label data).
2. ``image``: the image encoder plus its own linear classifier, the same way.
3. ``relation``: every text of a batch paired with every image (B x B pairs), fused,
   enhanced and scored by the relation head; the pipeline's loss (Frobenius, Eq. 11) compares
   the score matrix with ``T[q, p] = 1`` when text q and image p share a label. Both encoders
   are fine-tuned with the relation head.

The two classifiers are the recipe's extra modules: they exist only during training ("the
classification layer was removed", §4.4) and are not part of the final weights.

Under ``torchrun`` each process holds its own B pairs of a stage-3 batch. ``negatives:
local`` (the default) scores them as one process would, B x B; ``negatives: gathered``
scores the process's B texts against the images of every process (B x W*B pairs: W times as
many negatives per text, as one batch of W*B pairs would give the texts); the images'
gradients flow back to the process that embedded them (a differentiable all-gather).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from pydantic import Field
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import StageSpec, TrainBatch, TrainingRecipe
from registry import Params


class DAERThreeStageParams(Params):
    """Algorithm 1's stages are configured under ``train.stages.<text|image|relation>``; the
    one param here only matters under ``torchrun``."""

    negatives: Literal["local", "gathered"] = Field(
        "local", description="stage 3 under torchrun: local = each process scores its own "
        "B x B pairs (Eq. 11 per process batch); gathered = its B texts against the images of "
        "every process (B x W*B pairs, gradients flow back through the gather); no effect in "
        "one process")


def gather_images(images: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's image embeddings (differentiable) and labels, in rank order; the inputs
    themselves outside a multi-process job. Processes hold equal batches (the sampler pads
    shards to one length)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return images, labels
    from torch.distributed.nn.functional import all_gather
    gathered_labels = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered_labels, labels.contiguous())
    return torch.cat(all_gather(images.contiguous())), torch.cat(gathered_labels)


def shared_label_target(text_labels: torch.Tensor, image_labels: torch.Tensor) -> torch.Tensor:
    """The Frobenius target T: ``T[q, p] = 1`` when text q and image p share a label
    (both ``(N, C)`` multi-hot)."""
    return (text_labels @ image_labels.T > 0).to(text_labels.dtype)


def common_space_dim(model: nn.Module, recipe: str) -> int:
    """The width of the one space both encoders project into, for recipes that compare or
    classify text and image embeddings with the same modules; a config error naming the
    recipe when the encoders' ``out_dim`` differ."""
    dt, di = int(model.text_encoder.out_dim), int(model.image_encoder.out_dim)
    if dt != di:
        raise ConfigError(
            f"train.recipe {recipe!r} learns one common space, but the text encoder outputs"
            f" {dt} and the image encoder {di}; give both the same out_dim")
    return dt


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool
                        ) -> torch.Tensor:
    """Cross entropy against the (single) label, or binary cross entropy for multi-label."""
    if multi_label:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
    return nn.functional.cross_entropy(logits.float(), labels.argmax(dim=1))


class DAERThreeStage(TrainingRecipe):
    """Algorithm 1: text classification, image classification, relation training."""

    stages = (
        StageSpec("text", "stage 1/3 text classification", images=False,
                  validation="accuracy"),
        StageSpec("image", "stage 2/3 image classification", texts=False,
                  validation="accuracy", min_batch=2),
        StageSpec("relation", "stage 3/3 relation training", validation="retrieval",
                  min_batch=2),
    )

    def __init__(self, params: DAERThreeStageParams | None = None):
        self.params = params or DAERThreeStageParams()
        self.multi_label = False

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        self.multi_label = multi_label
        return {"text": nn.Linear(model.text_encoder.out_dim, num_classes),
                "image": nn.Linear(model.image_encoder.out_dim, num_classes)}

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        if stage == "text":
            return [model.text_encoder, extras["text"]]
        if stage == "image":
            return [model.image_encoder, extras["image"]]
        return [model]

    def classify(self, stage: str, model: nn.Module, extras: nn.ModuleDict,
                 batch: TrainBatch) -> torch.Tensor:
        if stage == "text":
            return extras["text"](model.encode_text(batch.text))
        return extras["image"](model.encode_image(batch.images))

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        if stage in ("text", "image"):
            loss = classification_loss(self.classify(stage, model, extras, batch),
                                       batch.labels, self.multi_label)
            return {"loss": loss}
        t = model.encode_text(batch.text)
        i = model.encode_image(batch.images)
        image_labels = batch.labels
        if self.params.negatives == "gathered":
            i, image_labels = gather_images(i, batch.labels)
        scores = model.pair_scores(t, i).float()
        return {"loss": model.loss(scores, shared_label_target(batch.labels, image_labels))}


def make_daer_three_stage(params: DAERThreeStageParams) -> DAERThreeStage:
    """Algorithm 1 of the DAER paper: text classification, image classification, then relation
    training on all pairs of each batch with both encoders fine-tuned.
    """
    return DAERThreeStage(params)
