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
from pydantic import Field, PositiveInt
from torch import nn

from daer_core.interfaces.relation import RelationHead
from registry import Params

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                                           "leaky_relu": nn.LeakyReLU}


class MLPRelationParams(Params):
    """Params of the ``mlp`` relation head (defaults: paper §4.4)."""

    in_dim: int | None = Field(600, ge=1, description="input width (the fused pair); paper: 600."
                                                      " null takes the fusion's output width")
    hidden: list[PositiveInt] = Field(default_factory=lambda: [1024, 512],
                                      description="hidden layer widths; paper: 1024, 512")
    activation: Literal["relu", "gelu", "tanh", "leaky_relu"] = Field(
        "relu", description="activation after each hidden layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer")
    output: Literal["sigmoid", "linear"] = Field(
        "sigmoid", description="sigmoid: similarity in [0, 1] for the 0/1 target (relation "
                               "network convention); linear: raw score")


class MLPRelation(RelationHead):
    """``(N, in_dim) -> (N,)`` similarity scores."""

    def __init__(self, params: MLPRelationParams, in_dim: int):
        """``in_dim`` is the resolved input width (``params.in_dim``, or the fusion's)."""
        super().__init__()
        self.in_dim = int(in_dim)
        self.output = params.output
        self.activation = params.activation
        layers: list[nn.Module] = []
        width = self.in_dim
        for h in params.hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[params.activation]()]
            if params.dropout:
                layers.append(nn.Dropout(params.dropout))
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

    @torch.no_grad()
    def after_first_layer_grid(self, t_part: torch.Tensor, i_part: torch.Tensor, *,
                               dtype: torch.dtype = torch.float32,
                               workspace: dict | None = None) -> torch.Tensor:
        """:meth:`after_first_layer` of ``t_part[q] + i_part[p]`` for every pair: ``(Q, H),
        (P, H) -> (Q, P)`` float32 scores; eval mode, no autograd.

        The inner loop of :meth:`~daer_core.pipeline.RetrievalModel.score_matrix`. The pair
        sums are written straight into a buffer that is reused from call to call (keep one
        ``workspace`` dict per gallery), activations run in place and each hidden layer is one
        ``addmm`` — the operations of :meth:`after_first_layer`, so the same float32 scores,
        without the temporaries of a module chain. With ``dtype=torch.bfloat16`` the pair sums
        are rounded once to bf16 and the hidden layers run as bf16 matrix products (float32
        accumulation); the output layer stays float32 so near-equal scores are not merged by
        bf16's 8-bit mantissa.
        """
        if self.training:
            raise RuntimeError("mlp relation: after_first_layer_grid is for eval mode (dropout "
                               "is skipped); call model.eval() first")
        ws = {} if workspace is None else workspace
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        key = (dtype, t_part.device)
        if ws.get("key") != key:
            ws.clear()
            ws["key"] = key
            ws["hidden"] = [(m.weight.detach().to(dtype).t(),
                             None if m.bias is None else m.bias.detach().to(dtype))
                            for m in linears[1:-1]]
        q, p, n = len(t_part), len(i_part), len(t_part) * len(i_part)
        x = self._buffer(ws, "h0", n, t_part.shape[1], dtype, t_part.device)
        sums = x.view(q, p, -1)
        if dtype == t_part.dtype == i_part.dtype or t_part.device.type != "cpu":
            torch.add(t_part.unsqueeze(1), i_part.unsqueeze(0), out=sums)
        else:
            # one row per text: the same sums, rounded once into the bf16 buffer. On CPU a
            # single broadcast add that also converts was ~10x slower per pair than this loop
            # for blocks of 128+ rows (docs/performance.md); on a GPU it is one kernel, and a
            # kernel launch per row would cost more than the block's matrix product
            for row in range(q):
                torch.add(i_part, t_part[row], out=sums[row])
        if len(linears) == 1:  # no hidden layer: the first layer gave the score
            return self._squash(x.squeeze(-1).to(torch.float32, copy=True)).view(q, p)
        x = self._activate_(x)
        for k, (weight_t, bias) in enumerate(ws["hidden"], start=1):
            y = self._buffer(ws, f"h{k}", n, weight_t.shape[1], dtype, t_part.device)
            if bias is None:
                torch.mm(x, weight_t, out=y)
            else:
                torch.addmm(bias, x, weight_t, out=y)
            x = self._activate_(y)
        last = linears[-1]
        if x.dtype != torch.float32:  # into a reused float32 buffer, not a fresh tensor each call
            x = self._buffer(ws, "out", n, x.shape[1], torch.float32, x.device).copy_(x)
        score = nn.functional.linear(x, last.weight, last.bias).squeeze(-1)
        return self._squash(score).view(q, p)

    @staticmethod
    def _buffer(ws: dict, name: str, rows: int, cols: int, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
        """A ``(rows, cols)`` view of a flat buffer kept in ``ws``, grown when too small."""
        need = rows * cols
        buf = ws.get(name)
        if buf is None or buf.numel() < need:
            buf = ws[name] = torch.empty(need, dtype=dtype, device=device)
        return buf[:need].view(rows, cols)

    def _activate_(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden activation, in place where torch has an in-place form."""
        if self.activation == "relu":
            return x.relu_()
        if self.activation == "leaky_relu":
            return nn.functional.leaky_relu_(x)
        if self.activation == "tanh":
            return x.tanh_()
        return ACTIVATIONS[self.activation]()(x)

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
    """DAER relation network (Eq. 10): MLP 600-1024-512-1, ReLU, sigmoid similarity."""
    in_dim = params.in_dim if params.in_dim is not None else fused_dim
    return MLPRelation(params, in_dim)
