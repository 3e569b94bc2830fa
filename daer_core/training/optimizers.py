"""The optimizers ``train.stages.<stage>.optimizer.name`` can name, as one table.

Each entry builds a torch optimizer from parameter groups and the stage's
:class:`~daer_core.config.schema.OptimizerConfig`; the schema's ``Literal`` of names and this
table are checked against each other by ``tests/training/test_optimizers.py``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..config.schema import OptimizerConfig

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
