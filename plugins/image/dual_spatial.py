"""``dual-spatial`` image attention — Eq. 4-6 of the paper (§3.2, sizes from §4.4).

For a feature map ``X^i`` (``C x H x W``) inside a bottleneck::

    X^is = sigmoid(f^{n x n}([F_avg; F_max]))    (4)  n = 3
    X^ib = sigmoid(f^{m x m}([F_avg; F_max]))    (5)  m = 7
    X^if = X^is * X^ib * X^i                     (6)  broadcast over channels

``F_avg`` / ``F_max`` are the mean and the max over the channels at every position (two
``H x W`` maps, stacked as 2 channels); each convolution maps those 2 channels to 1 with
"same" padding, so each weight map has the feature map's size and re-weights every channel
at that position: the 3x3 map judges small neighbourhoods, the 7x7 map larger ones.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from daer_core.attention import OddKernel
from daer_core.interfaces.image import ImageAttention
from registry import Params


class DualSpatialParams(Params):
    """Params of the ``dual-spatial`` image attention (defaults: paper §4.4)."""

    small_kernel: OddKernel = Field(3, description="size n of the small convolution (odd); "
                                                  "paper: 3")
    large_kernel: OddKernel = Field(7, description="size m of the large convolution (odd); "
                                                  "paper: 7")
    bias_init: float | None = Field(
        None, description="initial bias of both convolutions; null keeps PyTorch's default "
                          "init, a positive value (e.g. 3) starts both weight maps near 1 so a "
                          "pretrained backbone is barely disturbed at first")


class DualSpatialAttention(ImageAttention):
    """Two spatial attention maps at two scales, multiplied into the features (Eq. 4-6)."""

    def __init__(self, params: DualSpatialParams, channels: int):
        super().__init__()
        self.channels = int(channels)
        small, large = params.small_kernel, params.large_kernel
        self.conv_small = nn.Conv2d(2, 1, small, padding=small // 2)
        self.conv_large = nn.Conv2d(2, 1, large, padding=large // 2)
        if params.bias_init is not None:
            nn.init.constant_(self.conv_small.bias, params.bias_init)
            nn.init.constant_(self.conv_large.bias, params.bias_init)

    @staticmethod
    def pooled(x: torch.Tensor) -> torch.Tensor:
        """``[F_avg; F_max]``: channel mean and channel max, ``(B, 2, H, W)``."""
        return torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)

    def components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate of Eq. 4-6: ``pooled`` (B,2,H,W), ``weight_small`` (X^is),
        ``weight_large`` (X^ib), both (B,1,H,W), and ``output`` (X^if, like ``x``)."""
        if x.dim() != 4:
            raise ValueError(f"dual-spatial attention expects (B, C, H, W), got {tuple(x.shape)}")
        pooled = self.pooled(x)
        w_small = torch.sigmoid(self.conv_small(pooled))   # Eq. 4
        w_large = torch.sigmoid(self.conv_large(pooled))   # Eq. 5
        return {"pooled": pooled, "weight_small": w_small, "weight_large": w_large,
                "output": w_small * w_large * x}            # Eq. 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.components(x)["output"]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def make_dual_spatial(params: DualSpatialParams, channels: int) -> DualSpatialAttention:
    """DAER dual spatial attention (Eq. 4-6): channel avg+max maps, 3x3 and 7x7 convs, two sigmoid
    maps multiplied into the features.
    """
    return DualSpatialAttention(params, channels)
