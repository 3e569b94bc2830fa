"""The optimizers ``train.stages.<stage>.optimizer.name`` can name, as one table, and the
optimizers of a recipe's stage.

Each entry builds a torch optimizer from parameter groups and the stage's
:class:`~daer_core.config.schema.OptimizerConfig`; the schema's ``Literal`` of names and this
table are checked against each other by ``tests/training/test_optimizers.py``.
:func:`stage_optimizers` gives a stage one optimizer per step of the recipe's stage, over the
parameters that step trains (the fine-tuning policy's groups: :mod:`.finetune`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..config.schema import OptimizerConfig, StageConfig
from ..interfaces import ImageEncoder, TextEncoder, TrainingRecipe
from .finetune import parameter_groups

Builder = Callable[[list[dict[str, Any]], OptimizerConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, Builder] = {
    "sgd": lambda groups, oc: torch.optim.SGD(groups, lr=oc.lr, momentum=oc.momentum,
                                              weight_decay=oc.weight_decay),
    "adam": lambda groups, oc: torch.optim.Adam(groups, lr=oc.lr, betas=oc.betas,
                                                weight_decay=oc.weight_decay),
    "adamw": lambda groups, oc: torch.optim.AdamW(groups, lr=oc.lr, betas=oc.betas,
                                                  weight_decay=oc.weight_decay),
}


def build_optimizer(groups, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.name`` names, over ``groups``."""
    return OPTIMIZERS[config.name](groups, config)


def unique(params) -> list[nn.Parameter]:
    """``params`` in order, each parameter once (modules may share layers)."""
    seen: set[int] = set()
    return [p for p in params if not (id(p) in seen or seen.add(id(p)))]


def step_parameters(recipe: TrainingRecipe, model: nn.Module, heads: nn.ModuleDict,
                    stage: str, step: str) -> list[nn.Parameter]:
    """Trainable parameters of ``(stage, step)``, each once."""
    return unique(p for mod in recipe.trainable(stage, step, model, heads)
                  for p in mod.parameters() if p.requires_grad)


def pretrained_parameters(recipe: TrainingRecipe, model: nn.Module, heads: nn.ModuleDict,
                          stage: str) -> list[nn.Parameter]:
    """Parameters the stage's encoders loaded from pretrained weights (see
    ``pretrained_parameters()`` on the encoder interfaces)."""
    return unique(p for step in recipe.stage(stage).steps
                  for mod in recipe.trainable(stage, step, model, heads)
                  for sub in mod.modules() if isinstance(sub, (TextEncoder, ImageEncoder))
                  for p in sub.pretrained_parameters())


def stage_optimizers(recipe: TrainingRecipe, model: nn.Module, heads: nn.ModuleDict,
                     stage: str, sc: StageConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per step of the stage, over that step's parameters; pretrained ones
    in their own group when ``backbone_lr`` is set."""
    oc = sc.optimizer
    pretrained = pretrained_parameters(recipe, model, heads, stage)
    out = {}
    for step in recipe.stage(stage).steps:
        params = parameter_groups(step_parameters(recipe, model, heads, stage, step),
                                  pretrained, sc.backbone_lr)
        out[step] = build_optimizer(params, oc)
        if sc.warmup_steps or sc.lr_decay_every:
            for group in out[step].param_groups:  # saved with the optimizer's state
                group.setdefault("initial_lr", group["lr"])
    return out
