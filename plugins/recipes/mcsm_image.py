"""The ``mcsm-image`` encoder: MCSM's image-side networks on raw images.

The positions of a CNN's last feature map (the ``cnn`` reference) are the image regions,
read by the recurrent attention (image space); the map's global average is projected into
the text space. Kept apart from the text side, which shares only :mod:`.mcsm_layers`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from pydantic import Field, model_validator
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import ImageEncoder
from registry import Params, Ref, ref_field

from .mcsm_layers import RecurrentAttention, _into_reference, arrange, projection

#: params of mcsm-image before its CNN became a reference: they belong to ``cnn.params``
_CNN_KEYS = ("model", "weights_path", "weights_package", "size")


MCSM_CNN = {"name": "timm", "params": {"model": "mobilenetv3_large_100"}}


class MCSMImageParams(Params):
    """Params of the ``mcsm-image`` encoder (raw images)."""

    cnn: Ref["image_encoder", "native_image_size"] = ref_field(
        MCSM_CNN["name"], MCSM_CNN["params"], description="the CNN whose last feature map's "
        "positions are the image regions (an image encoder with a feature_map: timm, "
        "mobilenetv3-large; its projection is not used). Without local weights it starts "
        "from random weights (a warning is logged); give cnn.params.weights_path for real "
        "photographs")
    dim: int = Field(256, ge=1, description="width of each semantic space; outputs 2*dim")
    attention_dim: int | None = Field(None, ge=1, description="width of M = tanh(W_a H); null = "
                                      "dim")
    hidden: list[int] = Field(default_factory=lambda: [1024], description="hidden layers of "
                              "the projection of the pooled feature map into the text space")

    @model_validator(mode="before")
    @classmethod
    def _cnn_params(cls, data: Any) -> Any:
        return _into_reference(data, "cnn", _CNN_KEYS, MCSM_CNN)


class MCSMImageEncoder(ImageEncoder):
    """CNN feature map -> regions -> LSTM + attention (image space) and pooled map -> MLP
    (text space)."""

    def __init__(self, params: MCSMImageParams, cnn: ImageEncoder):
        super().__init__()
        self.params = params
        cnn.drop_projection()  # its pooled projection is not used
        self.cnn = cnn
        self.image_size = cnn.image_size
        was = cnn.training
        cnn.eval()
        with torch.no_grad():
            fmap = cnn.feature_map(torch.zeros(1, 3, self.image_size, self.image_size))
        cnn.train(was)
        channels = int(fmap.shape[1])
        self.regions = int(fmap.shape[2] * fmap.shape[3])
        d = int(params.dim)
        self.out_dim = 2 * d
        self.own = RecurrentAttention(channels, d, int(params.attention_dim or d))
        self.other = projection(channels, params.hidden, d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.cnn.feature_map(images)                          # (B, C, h, w)
        regions = fmap.flatten(2).transpose(1, 2)                   # (B, h*w, C)
        return arrange("image", self.own(regions), self.other(fmap.mean(dim=(2, 3))))

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return self.cnn.pretrained_parameters()

    def train(self, mode: bool = True) -> "MCSMImageEncoder":
        super().train(mode)
        self.cnn.train(mode)  # keeps a frozen backbone's batch-norm statistics
        return self

    def transform(self, train: bool = False) -> Callable:
        return self.cnn.transform(train)


def make_mcsm_image(params: MCSMImageParams, attention=None,
                    native_image_size: int | None = None, *,
                    cnn: ImageEncoder) -> MCSMImageEncoder:
    """MCSM image networks: a CNN (timm by default; local weights or random init), its
    feature-map positions as regions -> LSTM + attention (image space); pooled map -> MLP
    (text space)
    """
    if attention is not None:
        raise ConfigError("mcsm-image has its own (recurrent) attention; set "
                          "pipeline.image.attention: null")
    return MCSMImageEncoder(params, cnn)
