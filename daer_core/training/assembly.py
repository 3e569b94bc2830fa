"""Assembling a run before anything is written: its device, data, recipe and checks.

Everything here runs when a :class:`~daer_core.training.trainer.Trainer` is built or a new run
starts, and refuses what cannot train — an empty split, a recipe that needs class labels on
data without them, encoders for the wrong kind of input, a stage key the recipe does not have,
a batch too small for a stage, an image that cannot be decoded under ``missing: error`` — with
an error that names the config key, before the run directory is touched. The model's lazily
sized layers get their shapes here (:func:`materialize`), and once the weights are in place
the model gets its memory layout, compilation and multi-process wrapper
(:func:`prepare_devices`).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from ..config import RunConfig
from ..config.schema import StageConfig
from ..data.feature_pairs import feature_records
from ..data.images import undecodable
from ..errors import ConfigError, DataError
from ..interfaces import TrainBatch, TrainingRecipe
from . import distributed
from .runtime import configure_precision, pick_device, resolve_bf16, resolve_workers

log = logging.getLogger(__name__)


def runtime(config: RunConfig):
    """The run's process context, device, bf16 setting and loader workers (and the CPU
    thread count, when ``train.threads`` sets one)."""
    dist = distributed.context(config.train.device)
    device = distributed.device_for(dist, pick_device(config.train.device))
    configure_precision(device)
    bf16 = resolve_bf16(config.train.bf16, device)
    num_workers = resolve_workers(config.train.num_workers, device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    return dist, device, bf16, num_workers


def load_splits(dataset, names: tuple[str, ...], features: bool,
                dataset_name: str) -> dict[str, list]:
    """The records of the splits ``names`` (always with a ``val`` entry, maybe empty); an
    empty train or test split is an error, a missing validation split a warning."""
    if features:
        splits = {s: feature_records(dataset, s) for s in names}
    else:
        splits = {s: list(dataset.split(s)) for s in names}
    splits.setdefault("val", [])
    for s in ("train", "test"):
        if s in splits and not splits[s]:
            raise DataError(f"dataset {dataset_name!r}: the {s} split is empty")
    if not splits["val"]:
        log.warning("dataset %r has no validation split: early stopping and best-checkpoint"
                    " selection are disabled", dataset_name)
    return splits


def check_labels(config: RunConfig, recipe: TrainingRecipe, classes: list) -> None:
    """A recipe that trains on class labels needs data that has them."""
    if not classes and recipe.uses_labels:
        raise ConfigError(
            f"train.recipe {config.train.recipe.name!r} trains on class labels, and dataset"
            f" {config.dataset.name!r} has none (instance-level data); use a recipe that"
            " needs no labels: contrastive, vse or contrastive-rerank")


def stage_config(config: RunConfig, stage: str) -> StageConfig:
    """``train.stages.<stage>``, or the defaults when the config does not name it."""
    return getattr(config.train.stages, stage, None) or StageConfig()


def check_stage_configs(config: RunConfig, recipe: TrainingRecipe,
                        stage_names: list[str]) -> None:
    """Stage keys the recipe does not have, and batches too small for a stage, are config
    errors naming the key (before anything is written)."""
    stages = config.train.stages
    unknown = sorted(set(stages.model_extra or {}) - set(stage_names))
    if unknown:
        raise ConfigError(
            f"train.stages.{unknown[0]}: recipe {config.train.recipe.name!r} has no"
            f" stage {unknown[0]!r} (its stages: {', '.join(stage_names)})")
    for spec in recipe.stages:
        sc = stage_config(config, spec.name)
        if sc.enabled and sc.epochs and sc.batch_size < spec.min_batch:
            raise ConfigError(
                f"train.stages.{spec.name}.batch_size: must be at least {spec.min_batch}"
                f" for {spec.title} (a lone image cannot be batch-normalised and a lone"
                f" pair has no negatives), got {sc.batch_size}")


def check_inputs(config: RunConfig, model, features: bool) -> None:
    """Raw pairs need raw-input encoders, feature datasets feature-level ones."""
    wanted = "features" if features else "raw"
    for key, enc in (("pipeline.text.encoder", model.text_encoder),
                     ("pipeline.image.encoder", model.image_encoder)):
        if getattr(enc, "inputs", "raw") != wanted:
            name = config.pipeline.text.encoder.name if "text" in key else \
                config.pipeline.image.encoder.name
            what = ("pre-extracted features" if features else "raw images and texts")
            raise ConfigError(
                f"{key}: {name!r} reads {getattr(enc, 'inputs', 'raw')} inputs, but dataset"
                f" {config.dataset.name!r} provides {what}; "
                + ("use the feature-level encoders (`vector-mlp`, e.g. --preset "
                   "daer-features)" if features else "use encoders for raw data"))


def is_multi_label(train: list, classes: list, dataset_name: str) -> bool:
    """Whether some training pair has several labels; warns when every training pair has
    the same class (category-level figures then say nothing)."""
    multi_label = any(len(r.labels) > 1 for r in train)
    used = {c for r in train for c in r.labels}
    if len(used) < 2 and classes:
        log.warning("dataset %r: every training pair has the same class; category-level"
                    " mAP is then 1.0 for any model (chance is 1.0 too), so this run's"
                    " figures will say nothing. Check the labels", dataset_name)
    return multi_label


def refuse_undecodable_images(config: RunConfig, splits: dict[str, list]) -> None:
    """Under a dataset's ``missing: error`` policy (the file layouts' default), an image
    that cannot be decoded stops the run before anything is written — the same verdict
    ``daer data check`` gives — instead of being skipped silently mid-training."""
    params = config.dataset.params or {}
    if params.get("missing") != "error" or params.get("require_images") is False:
        return
    bad = undecodable([r for recs in splits.values() for r in recs])
    if bad:
        shown = "; ".join(f"{rid}: {why}" for rid, why in bad[:3])
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError(
            f"dataset {config.dataset.name!r}: {len(bad)} image(s) cannot be decoded"
            f" — {shown}{more}. Under `missing: error` they stop the run (as `daer data"
            " check` reports); fix the files, or set dataset.params.missing=skip to train"
            " without these pairs")


@torch.no_grad()
def materialize(model, heads: nn.ModuleDict, recipe: TrainingRecipe, preprocess,
                records: list, batches) -> None:
    """Give lazily sized layers (feature encoders infer their input width; a recipe's
    extra modules may too) their shapes with one small forward pass over ``records`` (two
    training pairs), before any optimizer or checkpoint sees them."""
    def lazy(module: nn.Module) -> bool:
        return any(isinstance(p, nn.parameter.UninitializedParameter)
                   for p in module.parameters())

    if not lazy(model) and not lazy(heads):
        return
    was = model.training
    model.eval()
    heads.eval()
    with torch.no_grad():
        model.encode_text(preprocess.text([r.text for r in records]))
        model.encode_image(torch.stack([preprocess.image_eval(r.load_image())
                                        for r in records]))
        if lazy(heads):  # one pass of every step's losses on two training pairs
            for spec in recipe.stages:
                batch = next(iter(batches.loader("train", spec, len(records), train=False,
                                                 records=records)))
                for step in spec.steps:
                    # (the model is still on the CPU here: it moves to the device next)
                    recipe.losses(spec.name, step, model, heads,
                                  batches.on_device(batch, spec, torch.device("cpu")))
    model.train(was)
    heads.train(was)


def prepare_devices(config: RunConfig, model, heads: nn.ModuleDict, recipe: TrainingRecipe,
                    device: torch.device, dist) -> nn.Module | None:
    """Memory layout, compilation and the multi-process wrapper, once the weights are in
    place (a new run after ``fit``, a resumed one after loading its checkpoint). Returns
    the DistributedDataParallel module under ``torchrun``, else None."""
    if device.type == "cuda":  # convolutions run faster on NHWC tensors
        model.image_encoder.to(memory_format=torch.channels_last)
    if config.train.compile:
        for part in (model.text_encoder, model.image_encoder, model.relation):
            part.compile()
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel
        # stages train different parts of the model: unused parameters are expected
        return DistributedDataParallel(RecipeModule(recipe, model, heads),
                                       find_unused_parameters=True)
    return None


class RecipeModule(nn.Module):
    """The model and the recipe's extra modules as one module whose forward is a recipe step,
    so that DistributedDataParallel sees every parameter and averages the gradients."""

    def __init__(self, recipe: TrainingRecipe, model: nn.Module, extras: nn.ModuleDict):
        super().__init__()
        self.recipe = recipe
        self.model = model
        self.extras = extras

    def forward(self, stage: str, step: str, batch: TrainBatch) -> dict[str, torch.Tensor]:
        return self.recipe.losses(stage, step, self.model, self.extras, batch)

