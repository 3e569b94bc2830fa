"""``concat`` fusion — Eq. 7, ``R^ti_qp = g(R^t_q; R^i_p)`` with ``g`` = splicing (§4.4).

The text representation comes first, then the image one, in the order Eq. 7 writes them:
300 + 300 = 600 features per pair, the relation network's input width.
"""
from __future__ import annotations

import torch

from daer_core.interfaces.relation import Fusion
from registry import Params


class ConcatParams(Params):
    """The ``concat`` fusion has no params: its width is text_dim + image_dim."""


class ConcatFusion(Fusion):
    """``(N, Dt), (N, Di) -> (N, Dt + Di)``: ``[text; image]``."""

    concatenates = True  # the core may then score galleries without forming fused pairs

    def __init__(self, params: ConcatParams, text_dim: int, image_dim: int):
        super().__init__()
        self.text_dim, self.image_dim = int(text_dim), int(image_dim)
        self.out_dim = self.text_dim + self.image_dim

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"concat fusion pairs rows: got {text.shape[0]} texts and "
                             f"{image.shape[0]} images")
        if text.shape[-1] != self.text_dim or image.shape[-1] != self.image_dim:
            raise ValueError(f"concat fusion built for text {self.text_dim} + image "
                             f"{self.image_dim}, got {text.shape[-1]} + {image.shape[-1]}")
        return torch.cat([text, image], dim=-1)

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, image_dim={self.image_dim}, out_dim={self.out_dim}"


def make_concat(params: ConcatParams, text_dim: int, image_dim: int) -> ConcatFusion:
    """DAER fusion (Eq. 7): concatenation [text; image] (300 + 300 = 600)."""
    return ConcatFusion(params, text_dim, image_dim)
