"""Training recipes: what a method trains, in which stages, with which losses.

The trainer (:mod:`daer_core.training.trainer`) owns everything that is the same for every
method — device, precision, data loading, seeds, checkpoints and exact resume, early stopping
on validation, logs, progress, multi-GPU. A recipe owns the rest:

* its **stages** (:class:`StageSpec`), in order; each is configured under
  ``train.stages.<name>`` (epochs, batch size, optimizer, patience, fine-tuning policy);
* the **extra modules** it trains beside the retrieval model (classifier heads,
  discriminators, centres), which live in checkpoints until the run ends and are never part
  of the final weights;
* for each stage, its **steps**: one optimizer step per batch by default; an adversarial
  method names several (e.g. ``("features", "discriminator")``), each with its own optimizer
  over its own modules, taken one after the other on every batch;
* the **loss terms** of each step (:meth:`TrainingRecipe.losses`), returned by name so the
  trainer can log every term; ``"loss"`` is what is minimised.

Algorithm 1 of the paper is the default recipe, ``daer-three-stage``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class StageSpec:
    """One stage of a recipe."""

    #: key under ``train.stages`` and in checkpoint names
    name: str
    #: what the progress bar and the log call it, e.g. ``"stage 1/3 text classification"``
    title: str
    #: whether batches carry decoded images (a text-only stage skips decoding them)
    images: bool = True
    #: whether batches carry prepared texts (an image-only stage skips copying them)
    texts: bool = True
    #: how the stage is judged after each epoch on the validation split: classification
    #: accuracy of :meth:`TrainingRecipe.classify`, or retrieval mAP of the model
    validation: Literal["accuracy", "retrieval"] = "retrieval"
    #: what ranks a retrieval validation: the relation head on every pair, or the cosine of
    #: the two embeddings (a first stage trained before the relation head that re-ranks it)
    scorer: Literal["relation", "cosine"] = "relation"
    #: smallest batch the stage can use (2: batch norm and in-batch negatives need company)
    min_batch: int = 1
    #: optimizer steps per batch, in order (one per optimizer)
    steps: tuple[str, ...] = ("main",)


@dataclass
class TrainBatch:
    """A batch on the training device."""

    ids: list[str]
    #: what the text encoder's ``prepare`` returned for these texts (None in image-only stages)
    text: dict[str, torch.Tensor] | None
    #: ``(B, 3, H, W)`` images (None in text-only stages)
    images: torch.Tensor | None
    #: ``(B, C)`` multi-hot labels
    labels: torch.Tensor
    #: the raw texts, for recipes that need them (kept on the host)
    texts: list[str] = field(default_factory=list)
    #: ``(B,)`` image numbers within the batch: pairs sharing one are captions of the same
    #: image (several captions per image); None = every pair has its own image
    groups: torch.Tensor | None = None

    def same_image(self) -> torch.Tensor:
        """``(B, B)`` True where pairs i and j show the same image (the diagonal included):
        such a pair is never a negative of the other."""
        b = self.labels.shape[0]
        if self.groups is None:
            return torch.eye(b, dtype=torch.bool, device=self.labels.device)
        return self.groups.unsqueeze(0) == self.groups.unsqueeze(1)


class TrainingRecipe(ABC):
    """How a method is trained; see the module docstring. Factories take the params model.

    The trainer calls :meth:`setup` once, before any stage, with the model and the dataset's
    classes; everything else is called per stage (and step) with the model and the extra
    modules :meth:`setup` returned.
    """

    #: the stages, in order
    stages: tuple[StageSpec, ...]
    #: whether the recipe needs class labels (classifiers, label-sharing targets); one that
    #: does not (contrastive, VSE) also trains on instance-level data without classes
    uses_labels: bool = True

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        """Build the extra modules the recipe trains (heads, discriminators, ...). Called
        right after the model is built, under the run's seed. Default: none."""
        return {}

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(f"recipe {type(self).__name__} has no stage {name!r}")

    @abstractmethod
    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        """The modules whose parameters the optimizer of ``(stage, step)`` updates."""

    @abstractmethod
    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        """Loss terms of one step on one batch; ``"loss"`` is minimised, every term logged."""

    def classify(self, stage: str, model: nn.Module, extras: nn.ModuleDict,
                 batch: TrainBatch) -> torch.Tensor:
        """``(B, C)`` class scores, for stages validated by ``accuracy``."""
        raise NotImplementedError(f"{type(self).__name__} does not classify in stage {stage!r}")
