"""Placing attention modules inside a backbone's blocks — a core API, so that an attention
plugin knows nothing about the backbone it sits in.

A backbone plugin names the places (dotted module paths, e.g. each bottleneck's residual
branch ``features.4.block``); :func:`insert_attention` measures the channel count that flows
out of each place with one dry run, builds an attention module for it, and replaces the
place with :class:`Attended` ``(place -> attention)``. Because the place is *inside* the
block, the attention acts before the block's residual addition, as in the paper's Figure 2.

**Identity start.** Inserted into a *pretrained* backbone, an attention module changes what
every block computes before any training: the paper's dual spatial attention multiplies each
feature map by two sigmoid maps near 0.5, and sixteen of them in a row erase the ImageNet
features (measured: cosine 0.000 to the plain backbone's pooled features). With
``identity_start=True`` every :class:`Attended` place gets a learnable scalar gate ``g``
starting at 0 (as in ReZero / LayerScale)::

    y = inner(x);   out = y + g * (attention(y) - y)

so the network computes exactly what it computed before insertion, while the attention module
itself still computes the paper's equations; ``g`` grows during training as the attention
proves useful (``g = 1`` is the plain paper form). Measurements and the alternatives tried are
in ``docs/method.md``; ``benchmarks/pretrained_start.py`` prints them.
"""
from __future__ import annotations

from typing import Annotated, Callable, Iterable, Literal

import torch
from pydantic import AfterValidator, Field
from torch import nn


#: how inserted attention starts (an encoder param): ``auto`` = ``identity`` when the backbone
#: is configured with pretrained weights, ``paper`` otherwise; ``paper`` = plain ``attention(y)``
#: with the attention's own initialisation; ``identity`` = gated, starting as the identity
AttentionStart = Literal["auto", "identity", "paper"]

ATTENTION_START_HELP = ("how inserted image attention starts: identity = a learnable gate at 0 "
                        "around it, so a pretrained backbone computes exactly what it computed "
                        "before insertion; paper = the attention's plain initialisation (Eq. "
                        "4-6 from the first step); auto = identity when pretrained weights are "
                        "configured, paper otherwise")



def _odd(size: int) -> int:
    if size % 2 == 0:
        raise ValueError(f"must be odd so that 'same' padding keeps the size, got {size}")
    return size


#: a params field for an attention's convolution or pooling window: a positive odd size, so
#: that 'same' padding keeps the spatial size or the sequence length (dual-spatial,
#: dual-region)
OddKernel = Annotated[int, Field(ge=1), AfterValidator(_odd)]


def gated_start(setting: AttentionStart, pretrained: bool) -> bool:
    """Whether inserted attention is gated (identity start) for an encoder's ``attention_start``
    param. ``pretrained`` must follow the *config* (weights configured), not whether a file
    was read, so that a model rebuilt from a checkpoint has the same parameters."""
    return setting == "identity" or (setting == "auto" and pretrained)


class Attended(nn.Module):
    """``attention(inner(x))``: a module followed by the attention built for its output.

    With ``gated=True`` the output is ``y + gate * (attention(y) - y)`` with ``y = inner(x)``
    and a learnable scalar ``gate`` that starts at 0: the place starts as the identity.
    """

    def __init__(self, inner: nn.Module, attention: nn.Module, gated: bool = False):
        super().__init__()
        self.inner = inner
        self.attention = attention
        if gated:
            self.gate = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("gate", None)

    def forward(self, x):
        y = self.inner(x)
        if self.gate is None:
            return self.attention(y)
        return torch.lerp(y, self.attention(y), self.gate.to(y.dtype))


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
                     places: Iterable[str], sample: torch.Tensor, *,
                     identity_start: bool = False) -> list[str]:
    """Wrap every module named in ``places`` with an attention built for its channel count.

    ``sample`` is a small input used once to measure the channels; ``make_attention(C)``
    builds one attention module per place. Returns the new dotted names of the attention
    modules (``<place>.attention``). Load pretrained weights *before* calling this: wrapping
    renames the inner parameters (``<place>.inner.*``). ``identity_start`` gates every place
    (see :class:`Attended`) so that the model computes exactly what it did before — use it
    whenever the backbone holds pretrained weights.
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
        setattr(parent, child, Attended(inner, make_attention(channels[place]),
                                        gated=identity_start))
        inserted.append(f"{place}.attention")
    return inserted


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every attention inserted by :func:`insert_attention`."""
    return [(f"{n}.attention" if n else "attention", m.attention)
            for n, m in model.named_modules() if isinstance(m, Attended)]


def inserted_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters :func:`insert_attention` added (attention modules and gates) — new layers,
    never part of a pretrained backbone's weights."""
    out: list[nn.Parameter] = []
    for m in model.modules():
        if isinstance(m, Attended):
            out += list(m.attention.parameters())
            if m.gate is not None:
                out.append(m.gate)
    return out


def attention_gates(model: nn.Module) -> list[tuple[str, float]]:
    """``(place, gate value)`` of every gated place (identity start), for reports."""
    return [(n, float(m.gate.detach())) for n, m in model.named_modules()
            if isinstance(m, Attended) and m.gate is not None]
