"""Building blocks shared by MCSM's networks (:mod:`plugins.recipes.mcsm_networks`).

The recurrent attention network (an LSTM and :class:`AttentionPool` over its states), the
projection into the other modality's space, the ``[image-space | text-space]`` layout every
MCSM encoder outputs, and the reading of configs written before a network became a component
reference. Kept apart so the vector, image and text encoders use one copy of each.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from daer_core.precision import run_recurrent


# -- the recurrent attention network ------------------------------------------------------

class AttentionPool(nn.Module):
    """``M = tanh(W_a H)``, ``a = softmax(w^T M)`` over positions; returns ``sum_j a_j h_j``.

    ``H``: ``(B, n, dim)`` LSTM states; ``mask``: ``(B, n)`` bool, True at real positions.
    """

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.W_a = nn.Linear(dim, attention_dim, bias=False)
        self.w = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n)`` attention weights (0 at masked positions, each row sums to 1)."""
        e = self.w(torch.tanh(self.W_a(states))).squeeze(-1)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        return torch.softmax(e, dim=1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        a = self.weights(states, mask)
        return (a.unsqueeze(-1) * states).sum(dim=1)


class RecurrentAttention(nn.Module):
    """An LSTM over a sequence ``(B, n, in_dim)`` and :class:`AttentionPool` over its states."""

    def __init__(self, in_dim: int, dim: int, attention_dim: int):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, dim, batch_first=True)
        self.attention = AttentionPool(dim, attention_dim)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        states, _ = run_recurrent(self.lstm, seq)
        return self.attention(states, mask)


def projection(in_dim: int | None, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between (lazy first layer when ``in_dim`` is None)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.LazyLinear(h) if width is None else nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.LazyLinear(out_dim) if width is None else nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def arrange(role: str, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``[image-space part | text-space part]`` from an encoder's own-space embedding and its
    projection into the other modality's space."""
    return torch.cat([own, other] if role == "image" else [other, own], dim=1)


# -- configs written before the references ----------------------------------------------

#: params of mcsm-image before its CNN became a reference: they belong to ``cnn.params``
_CNN_KEYS = ("model", "weights_path", "weights_package", "size")
#: params of mcsm-words before its word network became a reference (``words.params``)
_WORDS_KEYS = ("vector_size", "vectors_path", "vectors_format", "min_count", "w2v_epochs",
               "seed", "max_tokens", "freeze_embeddings")


def _into_reference(data: Any, field: str, keys: Sequence[str], default: dict[str, Any],
                    renamed: dict[str, Sequence[str]] | None = None) -> Any:
    """Move params of a config written before ``field`` was a reference into its params
    (over the reference given, else over ``default``)."""
    if not isinstance(data, dict):
        return data
    renamed = renamed or {}
    moved = {k: data[k] for k in keys if k in data}
    for old, new in renamed.items():
        if old in data:
            moved.update({n: data[old] for n in new})
    if not moved:
        return data
    data = {k: v for k, v in data.items() if k not in moved and k not in renamed}
    ref = data.get(field)
    ref = dict(ref) if isinstance(ref, dict) else {"name": ref} if isinstance(ref, str) \
        else {"name": default["name"], "params": dict(default["params"])}
    data[field] = {**ref, "params": {**dict(ref.get("params") or {}), **moved}}
    return data
