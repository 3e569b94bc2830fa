"""``dual-region`` text attention — Eq. 1-3 of the paper (§3.1, sizes from §4.4).

For the LSTM states ``X^t`` of one text (``L`` tokens x ``D`` features)::

    X^ts = sigmoid(f_theta(W0(F^s_avg) + W0(F^s_max)))     (1)  small kernel (3)
    X^tb = sigmoid(f_theta(W1(F^b_avg) + W1(F^b_max)))     (2)  large kernel (7)
    X^tf = X^ts * X^tb * X^t                               (3)  element-wise

``F_avg`` / ``F_max`` pool along the *word* axis with stride 1 and "same" padding, so every
token gets the average / maximum of each feature over the window of words centred on it:
the small window weighs a token by its phrase, the large one by its clause. ``W0`` (small
scale) and ``W1`` (large scale) are each shared by that scale's avg and max maps, as the paper
says; they map ``D -> hidden[0]``. ``f_theta`` is the excitation MLP of §4.4 whose three
hidden layers have 512, 1024 and 512 units: ``ReLU -> Linear(512, 1024) -> ReLU ->
Linear(1024, 512) -> ReLU -> Linear(512, D)``; its first hidden layer is the summed ``W``
output (the ReLU opens ``f_theta``). The paper writes one ``f_theta`` for both equations, so it
is shared by both scales by default (``shared_mlp``).

Padding never leaks into the pooled maps: a window averages only the real tokens it covers
(at sequence ends and next to padding the divisor is the number of real tokens, i.e. PyTorch's
``count_include_pad=False`` extended to the padding mask), and the max is taken over real
tokens only. Padded positions get zero output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from daer_core.attention import OddKernel
from daer_core.interfaces.text import TextAttention
from registry import Params


class DualRegionParams(Params):
    """Params of the ``dual-region`` text attention (defaults: paper §4.4)."""

    small_kernel: OddKernel = Field(3, description="small pooling window along the words "
                                                  "(odd, so the length is kept); paper: 3")
    large_kernel: OddKernel = Field(7, description="large pooling window along the words "
                                                  "(odd); paper: 7")
    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [512, 1024, 512], min_length=1,
        description="units of the excitation MLP's hidden layers; the first is the output of "
                    "W0/W1; paper: 512, 1024, 512")
    shared_mlp: bool = Field(True, description="one f_theta for both scales, as Eq. 1-2 write "
                                               "it; false gives each scale its own")


def masked_pool(x: torch.Tensor, mask: torch.Tensor | None, kernel: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Average and max of each feature over a ``kernel``-word window around every token.

    ``x``: ``(B, L, D)``; ``mask``: ``(B, L)`` bool, True for real tokens (None = all real).
    Returns ``(avg, max)``, both ``(B, L, D)``, zero at padded positions.
    """
    b, length, d = x.shape
    if mask is None:
        mask = torch.ones(b, length, dtype=torch.bool, device=x.device)
    pad = kernel // 2
    m = mask.to(x.dtype).unsqueeze(1)                        # (B, 1, L)
    xt = x.transpose(1, 2) * m                               # (B, D, L), padding zeroed
    window_sum = F.avg_pool1d(xt, kernel, stride=1, padding=pad, count_include_pad=True) * kernel
    window_count = F.avg_pool1d(m, kernel, stride=1, padding=pad, count_include_pad=True) * kernel
    avg = window_sum / window_count.clamp_min(1.0)
    neg = torch.finfo(x.dtype).min
    mx = F.max_pool1d(xt.masked_fill(~mask.unsqueeze(1), neg), kernel, stride=1, padding=pad)
    keep = mask.unsqueeze(1)
    avg = avg.masked_fill(~keep, 0.0)
    mx = mx.masked_fill(~keep, 0.0)
    return avg.transpose(1, 2), mx.transpose(1, 2)


def _shared_sum(w: nn.Linear, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``w(a) + w(b)`` as one product: ``W (a + b) + 2 bias``, the same sum with half the
    matrix work (W is shared by the avg and max maps, Eq. 1-2)."""
    bias = None if w.bias is None else 2 * w.bias
    return F.linear(a + b, w.weight, bias)


def _excitation(hidden: list[int], dim: int) -> nn.Sequential:
    """``f_theta``: ReLU on the first hidden layer, then the remaining layers, then ``-> dim``."""
    layers: list[nn.Module] = [nn.ReLU()]
    for a, b in zip(hidden[:-1], hidden[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(hidden[-1], dim))
    return nn.Sequential(*layers)


class DualRegionAttention(TextAttention):
    """Multi-scale word-window attention: ``(B, L, D) -> (B, L, D)`` (Eq. 1-3)."""

    def __init__(self, params: DualRegionParams, dim: int):
        super().__init__()
        hidden = list(params.hidden)
        self.dim = int(dim)
        self.small_kernel, self.large_kernel = params.small_kernel, params.large_kernel
        self.w0 = nn.Linear(self.dim, hidden[0])   # shared by avg and max, small scale
        self.w1 = nn.Linear(self.dim, hidden[0])   # shared by avg and max, large scale
        self.f_small = _excitation(hidden, self.dim)
        self.f_large = self.f_small if params.shared_mlp else _excitation(hidden, self.dim)

    def components(self, x: torch.Tensor, mask: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
        """Every intermediate of Eq. 1-3, for inspection and tests.

        Keys: ``avg_small``, ``max_small``, ``avg_large``, ``max_large`` (pooled maps),
        ``weight_small`` (X^ts), ``weight_large`` (X^tb), ``output`` (X^tf).
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"dual-region attention built for (B, L, {self.dim}) inputs, got "
                             f"{tuple(x.shape)}")
        avg_s, max_s = masked_pool(x, mask, self.small_kernel)
        avg_b, max_b = masked_pool(x, mask, self.large_kernel)
        w_small = torch.sigmoid(self.f_small(_shared_sum(self.w0, avg_s, max_s)))   # Eq. 1
        w_large = torch.sigmoid(self.f_large(_shared_sum(self.w1, avg_b, max_b)))   # Eq. 2
        out = w_small * w_large * x                                               # Eq. 3
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return {"avg_small": avg_s, "max_small": max_s, "avg_large": avg_b,
                "max_large": max_b, "weight_small": w_small, "weight_large": w_large,
                "output": out}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.components(x, mask)["output"]


def make_dual_region(params: DualRegionParams, dim: int) -> DualRegionAttention:
    """DAER dual-region attention (Eq. 1-3): avg+max word pooling at two window sizes (3, 7),
    shared W per scale, MLP 512-1024-512, sigmoid weights multiplied into the LSTM states.
    """
    return DualRegionAttention(params, dim)
