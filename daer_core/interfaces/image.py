"""Image-side interfaces: image attention and image encoder."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class ImageAttention(nn.Module):
    """Re-weights a feature map: ``(B, C, H, W) -> (B, C, H, W)``.

    Built with the channel count of the place it is inserted: ``factory(params, channels=C)``.
    It knows nothing about the backbone it sits in; :func:`daer_core.attention.insert_attention`
    does the placing.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


#: What an image encoder receives for its attention slot: ``channels -> ImageAttention``.
ImageAttentionFactory = Callable[[int], ImageAttention]


class ImageEncoder(nn.Module):
    """Maps ``(B, 3, H, W)`` float images to ``(B, out_dim)`` embeddings.

    :meth:`transform` returns the preprocessing that belongs to this encoder (PIL image ->
    ``(3, H, W)`` tensor) so that a model is never paired with the wrong transform.
    """

    out_dim: int
    image_size: int

    def transform(self, train: bool = False) -> Callable:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters that come from pretrained weights (the backbone), as opposed to the layers
        the encoder adds on top (projection, inserted attention and its gates).

        The trainer gives them ``train.stages.<stage>.backbone_lr``, freezes them for the
        stage's first ``frozen_backbone_epochs`` and, with ``batchnorm: frozen``, keeps the
        batch-norm statistics that came with them. Decided by the config (weights configured),
        not by whether a file was read, so that a resumed run groups its parameters the same
        way. Default: none — the encoder starts from random weights.
        """
        return []
