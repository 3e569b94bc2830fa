"""The optimizer table and the config's optimizer names are one list."""
from __future__ import annotations

import typing

import torch

from daer_core.config.schema import OptimizerConfig
from daer_core.training.optimizers import OPTIMIZERS, build_optimizer


def test_every_name_the_config_accepts_has_a_builder_and_back():
    names = set(typing.get_args(OptimizerConfig.model_fields["name"].annotation))
    assert names == set(OPTIMIZERS)


def test_builders_pass_the_stage_settings():
    p = torch.nn.Parameter(torch.zeros(2))
    sgd = build_optimizer([{"params": [p]}], OptimizerConfig(name="sgd", lr=0.3, momentum=0.5,
                                                            weight_decay=0.01))
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (
        0.3, 0.5, 0.01)
    adamw = build_optimizer([{"params": [p]}], OptimizerConfig(name="adamw", lr=1e-3,
                                                              betas=(0.5, 0.9)))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.5, 0.9)
    adam = build_optimizer([{"params": [p], "lr": 0.1}], OptimizerConfig(name="adam", lr=1e-3))
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["lr"] == 0.1
