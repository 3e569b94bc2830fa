"""``char-grid``: a text read by an image CNN, the way FGCrossNet (He, Peng & Xie, ACM MM 2019)
feeds texts into the one ResNet-50 it shares between all media.

A text becomes a square single-channel "image" and then a three-channel one:

1. lowercase characters of a fixed alphabet (the character-level CNN alphabet FGCrossNet's
   public code uses: space, a-z, 0-9 and 32 punctuation marks), one id each (0 = padding;
   characters outside the alphabet are dropped), truncated or padded to ``length``;
2. a learned embedding per character, ``(B, length, embed_dim)``;
3. two 1-D convolutions along the text (kernel 3, padding 1), ``embed_dim -> length/2`` with a
   ReLU, then ``length/2 -> length`` channels: an ``(B, length, length)`` map;
4. that map as a one-channel image, a 3x3 convolution to three channels;
5. the ``backbone`` image encoder (a reference to any registered ``image_encoder``, its
   name and params: ``backbone: {name: timm, params: {...}}``; the registry builds it and
   hands it in), which gives the embedding.

In FGCrossNet the backbone is the image network itself: the ``fgcrossnet`` recipe makes the
backbone *the run's image encoder* (one module) when training starts
(:meth:`CharGridEncoder.share_image_backbone`), so give it the image encoder's name and
params. The paper's ``length`` is 448, the side of its images. Configs written before the
reference (``backbone: timm`` with ``backbone_params``) are read as the reference.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import ImageEncoder, TextEncoder
from registry import Params, Ref, ref_field

#: the character-level CNN alphabet (Zhang et al. 2015) that FGCrossNet's code reads texts with
ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{}"


class CharGridParams(Params):
    """Params of the ``char-grid`` text encoder (defaults: FGCrossNet's)."""

    length: int = Field(448, ge=4, description="characters kept (truncated / padded), which is "
                        "also the side of the square map the CNN reads (FGCrossNet: 448)")
    embed_dim: int = Field(16, ge=1, description="character embedding width (FGCrossNet: 16)")
    alphabet: str = Field(ALPHABET, min_length=1, description="characters read (after "
                          "lowercasing); the others are dropped")
    backbone: Ref["image_encoder"] = ref_field(
        "mobilenetv3-large", description="the image encoder that reads the map (name and "
        "params); the fgcrossnet recipe replaces it by the run's image encoder, so give the "
        "image encoder's name and params")

    @model_validator(mode="before")
    @classmethod
    def _named_backbone(cls, data: Any) -> Any:
        """``backbone: NAME`` + ``backbone_params: {...}`` (configs written before the
        reference) -> ``backbone: {name: NAME, params: {...}}``."""
        if not isinstance(data, dict) or not ("backbone_params" in data
                                              or isinstance(data.get("backbone"), str)):
            return data
        data = dict(data)
        extra = data.pop("backbone_params", None) or {}
        ref = data.get("backbone", "mobilenetv3-large")
        ref = {"name": ref} if isinstance(ref, str) else dict(ref)
        data["backbone"] = {**ref, "params": {**dict(ref.get("params") or {}), **extra}}
        return data


class CharGridEncoder(TextEncoder):
    """Characters -> embeddings -> 1-D convolutions -> square map -> image CNN."""

    def __init__(self, params: CharGridParams, backbone: ImageEncoder):
        super().__init__()
        self.params = params
        self.index = {ch: i + 1 for i, ch in enumerate(dict.fromkeys(params.alphabet))}
        n = params.length
        self.embed = nn.Embedding(len(self.index) + 1, params.embed_dim, padding_idx=0)
        self.conv1 = nn.Conv1d(params.embed_dim, max(1, n // 2), kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(max(1, n // 2), n, kernel_size=3, padding=1)
        self.to_rgb = nn.Conv2d(1, 3, kernel_size=3, padding=1)
        self.backbone = backbone
        self.out_dim = int(backbone.out_dim)

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        n = self.params.length
        ids = torch.zeros(len(texts), n, dtype=torch.long)
        for row, text in enumerate(texts):
            codes = [self.index[ch] for ch in str(text).lower() if ch in self.index][:n]
            if codes:
                ids[row, :len(codes)] = torch.tensor(codes)
        return {"chars": ids}

    def grid(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, 3, length, length)``: the texts as the images the backbone reads."""
        x = self.embed(inputs["chars"]).transpose(1, 2)           # (B, E, L)
        x = self.conv2(torch.relu(self.conv1(x)))                  # (B, L, L)
        return self.to_rgb(x.unsqueeze(1))                         # (B, 3, L, L)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone(self.grid(inputs))

    def image_backbone(self) -> ImageEncoder:
        return self.backbone

    def as_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.grid(inputs)

    def share_image_backbone(self, image_encoder: ImageEncoder) -> None:
        """Read texts through ``image_encoder`` itself: it must be built like the backbone
        (same class, same tensors and shapes), else a ConfigError naming the key."""
        mine = {k: tuple(v.shape) for k, v in self.backbone.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in image_encoder.state_dict().items()}
        if type(self.backbone) is not type(image_encoder) or mine != theirs:
            raise ConfigError(
                "train.recipe 'fgcrossnet' runs texts through the image encoder, but the text "
                f"encoder's backbone ({type(self.backbone).__name__}) is not built like the "
                f"image encoder ({type(image_encoder).__name__}); give "
                "pipeline.text.encoder.params.backbone the image encoder's name and params")
        self.backbone = image_encoder

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.pretrained_parameters())

    def extra_repr(self) -> str:
        return f"length={self.params.length}, alphabet={len(self.index)} characters"


def make_char_grid(params: CharGridParams, tokenizer=None, attention=None, *,
                   backbone: ImageEncoder) -> CharGridEncoder:
    """FGCrossNet's text input: characters -> 1-D convolutions -> an ``L x L`` map -> an image
    encoder (made the run's image encoder by the ``fgcrossnet`` recipe). ``backbone`` is the
    referenced image encoder, built by the registry (no attention, no dataset size)."""
    return CharGridEncoder(params, backbone)
