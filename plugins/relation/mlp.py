"""``mlp`` relation head — Eq. 10, ``S^ti_qp = R(R^tie_qp, theta_r)`` (sizes from §4.4).

A four-layer network with 600, 1024, 512 and 1 neurons: the 600-d enhanced pair goes through
hidden layers of 1024 and 512 units to one similarity score. Following the relation-network
convention the paper builds on (its reference [17] and Sung et al.'s relation network), the
score passes through a sigmoid, a similarity in [0, 1] matched to the 0/1 target of Eq. 11;
``output: linear`` leaves it unbounded.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from daer_core.interfaces.relation import RelationHead

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                                           "leaky_relu": nn.LeakyReLU}


class MLPRelationParams(BaseModel):
    """Params of the ``mlp`` relation head (defaults: paper §4.4)."""

    model_config = ConfigDict(extra="forbid")

    in_dim: int | None = Field(600, ge=1, description="input width (the fused pair); paper: 600."
                                                      " null takes the fusion's output width")
    hidden: list[int] = Field(default_factory=lambda: [1024, 512],
                              description="hidden layer widths; paper: 1024, 512")
    activation: Literal["relu", "gelu", "tanh", "leaky_relu"] = Field(
        "relu", description="activation after each hidden layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer")
    output: Literal["sigmoid", "linear"] = Field(
        "sigmoid", description="sigmoid: similarity in [0, 1] for the 0/1 target (relation "
                               "network convention); linear: raw score")

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"hidden widths must be >= 1, got {v}")
        return v


class MLPRelation(RelationHead):
    """``(N, in_dim) -> (N,)`` similarity scores."""

    def __init__(self, in_dim: int, hidden: list[int] | tuple[int, ...] = (1024, 512),
                 activation: str = "relu", dropout: float = 0.0, output: str = "sigmoid"):
        super().__init__()
        self.in_dim = int(in_dim)
        self.output = output
        layers: list[nn.Module] = []
        width = self.in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    @property
    def layer_sizes(self) -> list[int]:
        """Neurons per layer, input first: ``[600, 1024, 512, 1]`` for the paper."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        return [linears[0].in_features, *(m.out_features for m in linears)]

    def first_layer(self) -> nn.Linear:
        return self.net[0]

    def after_first_layer(self, hidden: torch.Tensor) -> torch.Tensor:
        score = self.net[1:](hidden).squeeze(-1)
        return self._squash(score)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        if fused.shape[-1] != self.in_dim:
            raise ValueError(f"mlp relation built for in_dim={self.in_dim}, got width "
                             f"{fused.shape[-1]}")
        return self._squash(self.net(fused).squeeze(-1))

    def _squash(self, score: torch.Tensor) -> torch.Tensor:
        if self.output == "sigmoid" and not self.emit_logits:
            return torch.sigmoid(score)
        return score


def make_mlp(params: MLPRelationParams, fused_dim: int, text_dim: int | None = None,
             image_dim: int | None = None) -> MLPRelation:
    in_dim = params.in_dim if params.in_dim is not None else fused_dim
    return MLPRelation(in_dim, params.hidden, params.activation, params.dropout, params.output)
