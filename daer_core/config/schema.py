"""Pydantic models of pipeline and run configs.

Every model forbids unknown keys, so a typo fails with its full key path instead of being
ignored. Component params stay plain dicts here; they are validated against each component's
own params model when the config is resolved (:func:`daer_core.config.loading.resolve_components`).

A component is chosen by a field typed ``Ref["kind"]`` (:mod:`registry.refs`): that annotation
is the only record of where each kind is chosen (:data:`COMPONENT_PATHS` is read from it). The
core names no component: a required choice the config leaves out is filled with the default
a loaded plugin declares for its kind (``registry.add(..., default=True)``) when the config
is loaded (:func:`daer_core.config.loading.fill_default_components`).
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry import ComponentRef, Ref, ref_fields


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TextConfig(Strict):
    tokenizer: Ref["tokenizer"]
    encoder: Ref["text_encoder"]
    attention: Ref["text_attention"] | None = Field(
        default=None, description="text_attention placed in the encoder's attention slot")


class ImageConfig(Strict):
    encoder: Ref["image_encoder"]
    attention: Ref["image_attention"] | None = Field(
        default=None, description="image_attention inserted into the backbone's blocks")


class PipelineConfig(Strict):
    """The model: both encoders, how pairs are fused, enhanced and scored, and the loss."""

    text: TextConfig
    image: ImageConfig
    fusion: Ref["fusion"]
    enhancement: Ref["enhancement"]
    relation: Ref["relation"]
    loss: Ref["loss"]


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, allow_inf_nan=False)  # inf passed gt=0 and broke training
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    betas: tuple[float, float] = Field(
        (0.9, 0.999), description="Adam/AdamW only: decay rates of the first and second "
        "moment estimates (adversarial methods often use beta1 = 0.5)")

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class StageConfig(Strict):
    """One stage of Algorithm 1."""

    enabled: bool = True
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(32, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    patience: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better validation score")
    warmup_steps: int = Field(
        0, ge=0, description="the stage's first N optimizer steps raise every learning rate "
        "linearly from lr/N to lr (0 = none). A network trained from random weights with a "
        "large SGD rate can otherwise lock into a constant output in its first steps and "
        "never leave it (docs/training.md)")
    lr_decay_every: int | None = Field(
        None, ge=1, description="multiply every learning rate by lr_decay_factor after each "
        "this many epochs of the stage (a step decay, as PyTorch's StepLR once per epoch); "
        "null = constant")
    lr_decay_factor: float = Field(0.1, gt=0, le=1, description="the step decay's factor")
    # -- fine-tuning policy for encoders that load pretrained weights (no effect otherwise) --
    backbone_lr: float | None = Field(
        None, gt=0, description="learning rate of the pretrained backbone parameters (an "
        "encoder's pretrained_parameters()); the new layers (projection, inserted attention, "
        "heads, relation) keep optimizer.lr; null = optimizer.lr for everything")
    frozen_backbone_epochs: int = Field(
        0, ge=0, description="the stage's first N epochs train only the new layers: the "
        "pretrained backbone gets no gradient and keeps its batch-norm statistics")
    batchnorm: Literal["train", "frozen"] = Field(
        "train", description="batch-norm layers of the pretrained backbone: train = update "
        "their running statistics; frozen = keep the loaded ones (small data, small batches)")


class StagesConfig(Strict):
    """``train.stages``: one :class:`StageConfig` per stage of the run's recipe.

    Algorithm 1's three stages are named fields (with their defaults); a recipe with other
    stages (``train.recipe``) reads them from extra keys, validated as stage configs too. A key
    that the recipe does not have is reported by the trainer, naming it.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    __pydantic_extra__: dict[str, StageConfig]

    text: StageConfig = Field(default_factory=StageConfig, description="stage 1: text classification")
    image: StageConfig = Field(default_factory=StageConfig, description="stage 2: image classification")
    relation: StageConfig = Field(default_factory=lambda: StageConfig(batch_size=32),
                                  description="stage 3: relation training, all pairs per batch")

    @field_validator("image", "relation")
    @classmethod
    def _pairs_need_company(cls, sc: StageConfig) -> StageConfig:
        # checked here, not only by the trainer, so `daer config validate` rejects it too
        if sc.enabled and sc.epochs and sc.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (a lone image cannot be"
                             f" batch-normalised and a lone pair has no negatives), got"
                             f" {sc.batch_size}")
        return sc


class TrackingConfig(Strict):
    """``train.tracking``: views of the run log in experiment trackers (docs/training.md)."""

    tensorboard: bool = Field(True, description="write TensorBoard event files to "
                                                "<run>/tensorboard (scalars, test pictures)")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI (file:./mlruns, "
                                                     "http://host:5000); null = no MLflow")
    mlflow_experiment: str = Field("daer", description="MLflow experiment name")


class TrainConfig(Strict):
    recipe: Ref["recipe"] = Field(
        description="training recipe: the method's stages, steps and losses (`daer plugins "
                    "list recipe`)")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'...")
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bfloat16 autocast for forward passes; auto = on where the device "
                            "computes bf16 natively (CUDA with bf16, CPU with AMX)")
    compile: bool = Field(False, description="torch.compile the encoders and the relation "
                                             "head (opt-in: compilation takes minutes)")
    grad_clip: float | None = Field(5.0, gt=0, description="max gradient norm; null disables")
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes; auto = min(8, cores - 1) on CUDA, "
                            "cores // 4 (at most 4) on CPU, where workers compete with compute")
    finite_check_every: int = Field(
        50, ge=1, description="steps between checks that the loss is finite (each check waits "
                              "for the device; the run stops within this many steps)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null leaves default")
    stages: StagesConfig = Field(default_factory=StagesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value == "auto":
            return value
        import torch
        try:
            torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N") from None
        return value


class EvalConfig(Strict):
    block_size: int = Field(256, ge=1, description="texts x images scored per block")
    bf16: bool | Literal["auto"] = Field(
        "auto", description="score text x image pairs with bfloat16 matrix products (rankings "
                            "as float32 up to near-ties); auto = on where bf16 is native: CUDA "
                            "with bf16, a CPU with AMX or AVX512-BF16; false = float32")
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 50],
                          description="cut-offs for mAP@k and precision@k (each >= 1)")

    @field_validator("ks")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError(f"every k must be at least 1, got {value}")
        return value
    examples: int = Field(3, ge=0, description="queries per direction in the examples picture")
    protocol: Literal["auto", "category", "instance"] = Field(
        "auto", description="category: any item of the query's class is relevant, mAP (the "
        "paper's protocol); instance: only the query's own image or captions, Recall@K, rsum "
        "and median rank (Flickr30k / COCO); auto = instance when some image has several "
        "captions or the dataset has no classes, else category. Also picks the validation "
        "score (mAP average, or mean Recall = rsum / 600)")
    recall_ks: list[int] = Field(default_factory=lambda: [1, 5, 10],
                                 description="cut-offs of the instance protocol's Recall@K")
    folds: int | None = Field(None, ge=2, description="instance protocol: also report the mean"
                              " over this many folds of consecutive images (COCO 1K: 5 folds of"
                              " the 5K test images); null = the whole split only")
    rerank_k: int | None = Field(
        None, ge=1, description="instance protocol, two-stage scoring as LAVIS does: rank "
        "everything by the cosine of the two embeddings, then re-score each query's top "
        "rerank_k by the relation head (both figures are reported); null = the relation head "
        "scores every pair")

    @field_validator("recall_ks")
    @classmethod
    def _positive_recall(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError(f"recall_ks needs cut-offs of at least 1, got {value}")
        return value


class ParamRange(Strict):
    """One searched setting of ``tune.space``: a range (``low``/``high``, optionally ``log``
    or ``step``) or a list of ``choices``. Integers stay integers when ``low`` and ``high``
    are written as integers (``{low: 4, high: 12}``), unless ``type`` says otherwise."""

    low: int | float | None = Field(None, description="lower end of the range (inclusive)")
    high: int | float | None = Field(None, description="upper end of the range (inclusive)")
    log: bool = Field(False, description="sample the range on a log scale (learning rates)")
    step: int | float | None = Field(None, gt=0, description="grid step inside the range")
    choices: list[Any] | None = Field(None, min_length=1, description="categorical values")
    type: Literal["int", "float", "choice"] | None = Field(
        None, description="int / float / choice; inferred from the other keys when omitted")

    @model_validator(mode="after")
    def _one_form(self) -> "ParamRange":
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError("give either choices or a range (low/high), not both")
            if self.type not in (None, "choice"):
                raise ValueError(f"type {self.type!r} does not go with choices")
            self.__dict__["type"] = "choice"
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"need finite low <= high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined")
        kind = self.type or ("int" if all(isinstance(v, int) and not isinstance(v, bool)
                                          for v in (self.low, self.high, self.step or 1))
                             else "float")
        if kind == "choice":
            raise ValueError("type choice needs choices")
        self.__dict__["type"] = kind
        return self


class TuneConfig(Strict):
    """``daer tune``: what is searched and with which budget (docs/tuning.md).

    ``space`` maps key paths of this run config (``train.stages.text.optimizer.lr``) to the
    range searched for each; a preset ships a default space, and a config may add entries or
    drop one by setting it to null. The objective is always a validation score."""

    space: dict[str, ParamRange | None] = Field(
        default_factory=dict, description="key path -> range or choices (null drops an entry)")
    trials: int = Field(20, ge=1, description="trials of the study in all (every worker)")
    minutes: float | None = Field(None, gt=0, allow_inf_nan=False,
                                  description="start no new trial after this many minutes")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the TPE sampler")
    pruner: Literal["median", "none"] = Field(
        "median", description="median: stop a trial whose validation score at an epoch is "
                              "below the median of earlier trials at the same stage and epoch")
    prune_on: Literal["retrieval", "all"] = Field(
        "retrieval", description="stages whose epochs may prune a trial: retrieval = only "
                                 "stages validated by mAP, the objective's own measure (an "
                                 "encoder stage's classification accuracy is a proxy); all = "
                                 "every stage")
    startup_trials: int = Field(
        3, ge=0, description="trials sampled at random (and never pruned) before TPE and the "
                             "pruner take over")
    start_with_config: bool = Field(
        True, description="a new study's first trial runs the config's own values (where "
                          "they lie in the space), so the best found is never worse on "
                          "validation than the settings it started from")
    keep_checkpoints: bool = Field(
        False, description="keep each finished trial's checkpoints (large: several per "
                           "trial); its log, config and validation score are always kept")

    def active_space(self) -> dict[str, ParamRange]:
        """The entries that were not dropped with null."""
        return {k: v for k, v in self.space.items() if v is not None}


class RunConfig(Strict):
    """Everything a run needs. ``preset`` names a base config merged under this one."""

    name: str | None = Field(None, description="run name; runs/<name>/ by default")
    preset: str | None = Field(None, description="preset this config starts from")
    seed: int = Field(0, ge=0, lt=2**63, description="seed of the run (weights, shuffling, "
                                                     "splits that a dataset draws)")
    dataset: Ref["dataset"] | None = None
    pipeline: PipelineConfig
    train: TrainConfig
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig,
                             description="search space and budget of `daer tune`")


#: where component references live in a RunConfig, and their kinds: read from the
#: ``Ref[...]`` annotations above, never kept by hand
COMPONENT_PATHS: dict[tuple[str, ...], str] = {f.path: f.kind for f in ref_fields(RunConfig)}
