"""Placing attention modules inside a backbone's blocks — a core API, so that an attention
plugin knows nothing about the backbone it sits in.

A backbone plugin names the places (dotted module paths, e.g. each bottleneck's residual
branch ``features.4.block``); :func:`insert_attention` measures the channel count that flows
out of each place with one dry run, builds an attention module for it, and replaces the
place with :class:`Attended` ``(place -> attention)``. Because the place is *inside* the
block, the attention acts before the block's residual addition, as in the paper's Figure 2.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


class Attended(nn.Module):
    """``attention(inner(x))``: a module followed by the attention built for its output."""

    def __init__(self, inner: nn.Module, attention: nn.Module):
        super().__init__()
        self.inner = inner
        self.attention = attention

    def forward(self, x):
        return self.attention(self.inner(x))


def find_blocks(model: nn.Module, types: tuple[type, ...] | Callable[[str, nn.Module], bool]
                ) -> list[str]:
    """Dotted names of the submodules that are instances of ``types`` (or match a predicate)."""
    match = types if callable(types) and not isinstance(types, tuple) else (
        lambda _n, m: isinstance(m, types))  # noqa: E731
    return [name for name, mod in model.named_modules() if name and match(name, mod)]


def _output_channels(model: nn.Module, places: list[str], sample: torch.Tensor) -> dict[str, int]:
    found: dict[str, int] = {}
    hooks = []
    for place in places:
        mod = model.get_submodule(place)

        def hook(_m, _inp, out, place=place):
            if not (isinstance(out, torch.Tensor) and out.dim() == 4):
                raise TypeError(f"attention place {place!r} outputs "
                                f"{type(out).__name__} {getattr(out, 'shape', '')}, "
                                "expected a (B, C, H, W) feature map")
            found[place] = int(out.shape[1])
        hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    missing = [p for p in places if p not in found]
    if missing:
        raise ValueError(f"attention places never ran in a forward pass: {missing}")
    return found


def insert_attention(model: nn.Module, make_attention: Callable[[int], nn.Module],
                     places: Iterable[str], sample: torch.Tensor) -> list[str]:
    """Wrap every module named in ``places`` with an attention built for its channel count.

    ``sample`` is a small input used once to measure the channels; ``make_attention(C)``
    builds one attention module per place. Returns the new dotted names of the attention
    modules (``<place>.attention``). Load pretrained weights *before* calling this: wrapping
    renames the inner parameters (``<place>.inner.*``).
    """
    places = list(places)
    if not places:
        raise ValueError("insert_attention: no places given — the backbone exposes no blocks")
    channels = _output_channels(model, places, sample)
    inserted = []
    for place in places:
        parent_name, _, child = place.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        inner = parent.get_submodule(child)
        setattr(parent, child, Attended(inner, make_attention(channels[place])))
        inserted.append(f"{place}.attention")
    return inserted


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every attention inserted by :func:`insert_attention`."""
    return [(f"{n}.attention" if n else "attention", m.attention)
            for n, m in model.named_modules() if isinstance(m, Attended)]
