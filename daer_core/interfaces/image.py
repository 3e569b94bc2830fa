"""Image-side interfaces: image attention and image encoder."""
from __future__ import annotations

from abc import abstractmethod
from typing import Callable

import torch

from .modules import Encoder, Module


class ImageAttention(Module):
    """Re-weights a feature map: ``(B, C, H, W) -> (B, C, H, W)``.

    Built with the channel count of the place it is inserted: ``factory(params, channels=C)``.
    It knows nothing about the backbone it sits in; :func:`daer_core.attention.insert_attention`
    does the placing.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


#: What an image encoder receives for its attention slot: ``channels -> ImageAttention``.
ImageAttentionFactory = Callable[[int], ImageAttention]


class ImageEncoder(Encoder):
    """Maps ``(B, 3, H, W)`` float images to ``(B, out_dim)`` embeddings.

    :meth:`transform` returns the preprocessing that belongs to this encoder (PIL image ->
    ``(3, H, W)`` tensor) so that a model is never paired with the wrong transform.
    """

    image_size: int

    @abstractmethod
    def transform(self, train: bool = False) -> Callable: ...

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor: ...

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)``: the backbone's last spatial feature map, before pooling and the
        projection (MCSM's image network reads its positions as image regions). Optional:
        the default raises a PipelineError naming the encoder."""
        raise self.unsupported("feature_map()", "spatial feature map")
