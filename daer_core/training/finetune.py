"""The fine-tuning policy for encoders that start from pretrained weights, and the
learning-rate warmup any stage may have.

A stage's config (:class:`~daer_core.config.schema.StageConfig`) may give the pretrained
backbone its own learning rate (``backbone_lr``), keep it frozen for the stage's first epochs
(``frozen_backbone_epochs``) and keep its batch-norm statistics (``batchnorm: frozen``). Which
parameters are "pretrained" is each encoder's answer to ``pretrained_parameters()``; an encoder
trained from random weights answers none, and then none of this changes anything.

*Why:* measured on real photos, one SGD learning rate for an ImageNet backbone and for two
freshly initialised linear layers either moves the backbone too far or the new layers too
little (details in ``docs/training.md``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn


def parameter_groups(params: list[nn.Parameter], pretrained: Iterable[nn.Parameter],
                     backbone_lr: float | None) -> list[dict]:
    """Optimizer parameter groups: new layers first (the optimizer's own lr), then the
    pretrained ones with ``backbone_lr``. One group when there is nothing to separate, so an
    optimizer of a run without pretrained weights is exactly what it always was."""
    pretrained_ids = {id(p) for p in pretrained}
    backbone = [p for p in params if id(p) in pretrained_ids]
    if backbone_lr is None or not backbone:
        return [{"params": params}]
    new = [p for p in params if id(p) not in pretrained_ids]
    groups = [{"params": new}] if new else []
    return groups + [{"params": backbone, "lr": backbone_lr}]


@contextmanager
def frozen(params: Iterable[nn.Parameter], enabled: bool = True) -> Iterator[None]:
    """Parameters get no gradient inside the block (their ``requires_grad`` is restored on
    exit, so a backbone frozen by its own config stays frozen)."""
    params = list(params) if enabled else []
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def hold_batchnorm(model: nn.Module, pretrained: Iterable[nn.Parameter]) -> int:
    """Put every batch-norm layer whose affine parameters are pretrained in eval mode, so its
    loaded running statistics are used and kept. Call after ``model.train()``; returns the
    count (0 when nothing is pretrained)."""
    pretrained_ids = {id(p) for p in pretrained}
    held = 0
    for mod in model.modules():
        if not isinstance(mod, nn.modules.batchnorm._BatchNorm):
            continue
        own = list(mod.parameters(recurse=False))
        if own and all(id(p) in pretrained_ids for p in own):
            mod.eval()
            held += 1
    return held


def warm_up_learning_rates(optimizers: Iterable[torch.optim.Optimizer], step: int,
                           warmup_steps: int, *, epoch: int = 0, decay_every: int | None = None,
                           decay_factor: float = 1.0) -> None:
    """Set every group's learning rate for optimizer step ``step`` (0-based) of a stage in
    epoch ``epoch`` (0-based): ``initial_lr * (step + 1) / warmup_steps`` during the warmup,
    ``initial_lr`` from then on, times ``decay_factor ** (epoch // decay_every)`` when a step
    decay is set (PyTorch's ``StepLR`` stepped once per epoch).

    The rate is a function of the step and epoch counts alone (kept in the trainer's state),
    so a resumed run continues the schedule exactly. Python floats only: no device
    synchronisation.
    """
    if warmup_steps <= 0 and not decay_every:
        return
    factor = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if decay_every:
        factor *= decay_factor ** (epoch // decay_every)
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
