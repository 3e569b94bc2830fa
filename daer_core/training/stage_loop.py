"""The stage loop: a recipe's stage, epoch by epoch, until its epochs or its patience end.

Each epoch trains over the stage's loader (shuffled from (seed, stage, epoch), so a resumed run
replays exactly the batches an uninterrupted run would have seen), validates, keeps the best
weights (``best-<stage>``), tells the trainer's ``epoch_hooks`` (:class:`EpochReport`) and
writes a resumable checkpoint. A training step never waits for the device: losses are summed
on it and checked for finiteness every ``train.finite_check_every`` steps. When a stage ends
(:func:`next_stage`) its best weights are kept and the counters start over for the next one.

These functions work on a :class:`~daer_core.training.trainer.Trainer` and reach its epoch,
validation and optimizer steps through its methods (``_train_epoch``, ``_validate``,
``_optimizers``), which tests, benchmarks and ``daer tune`` replace.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..data.loader import EpochSampler
from ..errors import TrainingError
from ..interfaces import TrainBatch
from .assembly import stage_config
from .finetune import frozen, hold_batchnorm, warm_up_learning_rates
from .optimizers import pretrained_parameters, step_parameters
from .runtime import derived_seed

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger(__name__)

Optimizers = dict[str, torch.optim.Optimizer]


@dataclass(frozen=True)
class EpochReport:
    """What one finished epoch tells the trainer's ``epoch_hooks``."""

    stage: str
    stage_index: int      # position of the stage in the recipe
    epoch: int            # epochs completed in that stage (1 after the first)
    score: float | None   # the stage's validation score (None without a validation split)
    metrics: dict[str, Any]
    validation: str = "retrieval"   # what the score is: "retrieval" (mAP) or "accuracy"


def run_stage(trainer: Trainer, stage: str, optimizers: Optimizers | None) -> None:
    """Train ``stage`` from the trainer's position in it (``optimizers``: those restored
    by a resume, else built here)."""
    spec = trainer.recipe.stage(stage)
    sc = stage_config(trainer.config, stage)
    state = trainer.state
    if not sc.enabled or sc.epochs == 0:
        trainer._log("stage_skipped", stage=stage)
        return
    if optimizers is None:
        optimizers = trainer._optimizers(stage)
    # one loader for the whole stage: its workers live across epochs
    sampler = EpochSampler(len(trainer.splits["train"]), shuffle=True, rank=trainer.dist.rank,
                           world=trainer.dist.world)
    trainer._stage_loader = trainer._batches.loader("train", spec, sc.batch_size, train=True,
                                                    sampler=sampler)
    while state.epoch < sc.epochs:
        t0 = time.time()
        train = trainer._train_epoch(stage, optimizers)
        val = trainer._validate(stage)
        state.epoch += 1
        score = val.pop("score", None)
        improved = score is not None and (state.best_score is None
                                          or score > state.best_score)
        if improved:
            state.best_score, state.best_epoch = score, state.epoch
            state.bad_epochs = 0
            trainer._save_weights(f"best-{stage}")
        elif score is not None:
            state.bad_epochs += 1
        trainer._log("epoch", stage=stage, epoch=state.epoch, seconds=round(time.time() - t0, 2),
                     best=improved, **train, **val)
        log.info("%s epoch %d/%d: %s", spec.title, state.epoch, sc.epochs,
                 ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in {**train, **val}.items()))
        report = EpochReport(stage=stage, stage_index=state.stage_index,
                             epoch=state.epoch, score=score, metrics={**train, **val},
                             validation=spec.validation)
        for hook in trainer.epoch_hooks:
            hook(report)
        stop = sc.patience is not None and state.bad_epochs >= sc.patience
        if stop:
            trainer._log("early_stop", stage=stage, epoch=state.epoch,
                         best_epoch=state.best_epoch)
            log.info("early stopping %s after epoch %d (best epoch %s)", stage,
                     state.epoch, state.best_epoch)
        if stop or state.epoch >= sc.epochs:
            break
        trainer._save(optimizers)


def next_stage(trainer: Trainer) -> None:
    """Close the current stage: keep its best weights, reset the counters, checkpoint."""
    state = trainer.state
    spec = trainer.recipe.stages[state.stage_index]
    if trainer._restore(f"best-{spec.name}"):
        log.info("%s: keeping the weights of epoch %s (best on validation)",
                 spec.title, state.best_epoch)
    if spec.validation == "retrieval" and state.best_epoch is not None:
        key = "val_avg" if trainer.protocol == "category" else "val_score"
        trainer._log("selected", stage=spec.name, best_epoch=state.best_epoch,
                     **{key: state.best_score})
    state.stage_index += 1
    state.epoch = 0
    state.best_score = state.best_epoch = None
    state.bad_epochs = 0
    state.stage_step = 0
    if state.stage_index >= len(trainer.stage_names):
        state.finished_training = True
        # the weights `daer evaluate` and `daer search` use; the classifier heads are gone
        trainer._save_weights("final", heads=False)
    trainer._save(None)


def train_epoch(trainer: Trainer, stage: str, optimizers: Optimizers) -> dict[str, float]:
    """One epoch of ``stage`` over the stage's loader, under the fine-tuning policy (a
    backbone frozen for the stage's first epochs, batch-norm statistics held)."""
    sc = stage_config(trainer.config, stage)
    state = trainer.state
    loader = trainer._stage_loader
    loader.sampler.set_epoch(derived_seed(trainer.config.seed, state.stage_index, state.epoch))
    pretrained = pretrained_parameters(trainer.recipe, trainer.model, trainer.heads, stage)
    warm_up = state.epoch < sc.frozen_backbone_epochs  # backbone frozen this epoch
    trainer.model.train()
    trainer.heads.train()
    if warm_up or sc.batchnorm == "frozen":
        hold_batchnorm(trainer.model, pretrained)
    with frozen(pretrained, enabled=warm_up):
        return train_steps(trainer, stage, optimizers, loader)


def check_finite(sums: dict[str, torch.Tensor], stage: str, epoch: int) -> None:
    """One wait for the device every ``finite_check_every`` steps, not one per step."""
    if sums and not bool(torch.isfinite(torch.stack(list(sums.values()))).all()):
        raise TrainingError(
            f"{stage} stage: non-finite loss at epoch {epoch + 1};"
            f" lower train.stages.{stage}.optimizer.lr or enable train.grad_clip")


def losses(trainer: Trainer, stage: str, step: str, batch: TrainBatch
           ) -> dict[str, torch.Tensor]:
    """The recipe's loss terms of ``(stage, step)`` on ``batch``."""
    if trainer._ddp is not None:  # gradients averaged over the processes of the job
        return trainer._ddp(stage, step, batch)
    return trainer.recipe.losses(stage, step, trainer.model, trainer.heads, batch)


def train_steps(trainer: Trainer, stage: str, optimizers: Optimizers,
                loader) -> dict[str, float]:
    """The optimizer steps of one epoch; returns the epoch's mean loss terms per pair
    (``train_<term>``, or ``train_<step>_<term>`` for a stage of several steps) and
    ``steps``."""
    spec = trainer.recipe.stage(stage)
    sc = stage_config(trainer.config, stage)
    state = trainer.state
    clip = trainer.config.train.grad_clip
    every = trainer.config.train.finite_check_every
    params = {step: step_parameters(trainer.recipe, trainer.model, trainer.heads, stage, step)
              for step in spec.steps}
    sums: dict[str, torch.Tensor] = {}   # loss terms x pairs, summed on the device
    count, steps, lone = 0, 0, 0
    bar = tqdm(loader, desc=f"{spec.title} epoch {state.epoch + 1}/{sc.epochs}",
               leave=False, unit="batch", disable=None)  # None: no frames unless a tty
    for batch in bar:
        for rid, reason in batch.skipped:
            if rid not in state.skipped_ids:
                log.warning("skipping pair %s: %s", rid, reason)
                state.skipped_ids.append(rid)
                trainer._log("skip", id=rid, reason=reason)
        if not batch.ids or len(batch.ids) < spec.min_batch:
            # a lone image cannot be batch-normalised, and a lone pair has no negatives
            lone += len(batch.ids)
            continue
        tb = trainer._on_device(batch, spec)
        if state.stage_step <= sc.warmup_steps or sc.lr_decay_every:
            warm_up_learning_rates(optimizers.values(), state.stage_step,
                                   sc.warmup_steps, epoch=state.epoch,
                                   decay_every=sc.lr_decay_every,
                                   decay_factor=sc.lr_decay_factor)
        for step in spec.steps:
            with trainer._autocast():
                terms = losses(trainer, stage, step, tb)
            optimizer = optimizers[step]
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params[step], clip)
            optimizer.step()
            prefix = "train_" if len(spec.steps) == 1 else f"train_{step}_"
            for name, value in terms.items():
                key = prefix + name
                contrib = value.detach().double() * len(batch.ids)
                sums[key] = sums[key] + contrib if key in sums else contrib
        steps += 1
        state.stage_step += 1
        count += len(batch.ids)
        if steps % every == 0:
            check_finite(sums, stage, state.epoch)
            bar.set_postfix(loss=f"{float(sums[next(iter(sums))]) / count:.4f}")
    check_finite(sums, stage, state.epoch)
    if lone:
        log.info("%s: %d pair(s) left alone in the last batch were not used this epoch",
                 spec.title, lone)
    if steps == 0:
        raise TrainingError(f"{stage} stage: epoch {state.epoch + 1} made no optimizer"
                            f" step (train split of {len(trainer.splits['train'])} pairs,"
                            f" batch_size {sc.batch_size})")
    out: dict[str, float] = {k: float(v) / max(count, 1) for k, v in sums.items()}
    out["steps"] = steps
    return out
