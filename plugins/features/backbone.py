"""``backbone-pool``: globally pooled feature maps of a frozen torchvision or timm CNN.

Weights come only from a local file (``weights``); nothing is downloaded. Without a file the
network keeps its random initialisation and a warning says so, because such features are
only useful for testing the plumbing.

The classifier is removed and the last feature map (B x C x H x W, or B x tokens x C for a
transformer in timm) is average- or max-pooled to a C-dimensional vector. Images are resized
(shorter side) and centre-cropped to ``image_size`` and normalised with the network's mean
and standard deviation (ImageNet's by default).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from daer_core.errors import ConfigError
from daer_core.interfaces.methods import Configured, FeatureExtractor
from daer_core.weights import WeightsSource, check_one_source, find_package_weights
from registry import Params

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: trailing children of a torchvision model that pool and classify
_TORCHVISION_HEADS = ("avgpool", "fc", "classifier", "head", "heads", "dropout")


class BackboneParams(WeightsSource, Params):
    backbone: str = Field("resnet18", description="architecture name in the chosen library,"
                                                  " e.g. resnet50, mobilenet_v3_large")
    library: Literal["torchvision", "timm"] = Field("torchvision", description="where the"
                                                    " architecture comes from")
    weights: str | None = Field(None, description="local weight file (.pth/.pt/.bin/"
                                                  ".safetensors) with the full network's"
                                                  " state dict; with weights_package unset,"
                                                  " null = random init (warned)")

    @model_validator(mode="after")
    def _one_source(self) -> "BackboneParams":
        check_one_source(self.weights, self.weights_package, self.weights_file,
                         names=("weights", "weights_package", "weights_file"), required=False)
        return self
    image_size: int = Field(224, ge=16, description="side of the centre crop fed to the net")
    pool: Literal["avg", "max"] = Field("avg", description="global pooling of the last"
                                                           " feature map")
    batch_size: int = Field(32, ge=1, description="images per forward pass")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")


def _torchvision_trunk(name: str, weights: "_Source | None"):
    import torchvision
    from torch import nn

    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise ConfigError(f"backbone-pool: unknown torchvision backbone {name!r} ({exc})"
                          ) from None
    if weights:
        _load(model, weights, head_prefixes=_TORCHVISION_HEADS)
    children = list(model.named_children())
    while children and children[-1][0] in _TORCHVISION_HEADS:
        children.pop()
    if not children or len(children) == len(list(model.children())):
        raise ConfigError(f"backbone-pool: cannot find the classifier of torchvision"
                          f" {name!r}; use a CNN (resnet, mobilenet, efficientnet, vgg, ...)"
                          " or library: timm")
    trunk = children[0][1] if len(children) == 1 else nn.Sequential(OrderedDict(children))
    return trunk, IMAGENET_MEAN, IMAGENET_STD


def _timm_trunk(name: str, weights: "_Source | None"):
    import timm
    from torch import nn

    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as exc:
        raise ConfigError(f"backbone-pool: unknown timm backbone {name!r} ({exc})") from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if weights:
        head = cfg.get("classifier") or "head"
        heads = (head,) if isinstance(head, str) else tuple(head)
        _load(model, weights, head_prefixes=heads)

    class _Features(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_features(x)

    return (_Features(model), tuple(cfg.get("mean", IMAGENET_MEAN)),
            tuple(cfg.get("std", IMAGENET_STD)))


@dataclass(frozen=True)
class _Source:
    """A resolved weight file, how to map it, and the config key to name in errors."""

    path: str
    mapping: str
    key: str


def _source(params: BackboneParams) -> _Source | None:
    if params.weights_package:
        key = "image_features.params.weights_package"
        path = find_package_weights(params.weights_package, params.weights_file, key=key)
        return _Source(str(path), params.key_mapping, key)
    if params.weights:
        return _Source(params.weights, params.key_mapping, "weights")
    return None


def _load(model, source: _Source, head_prefixes: Sequence[str]) -> None:
    """Load a weight file (by name or by position); the classifier's tensors may be absent
    or differ."""
    from daer_core.weights import load_weights_file
    optional = [k for k in model.state_dict()
                if any(k == h or k.startswith(h + ".") for h in head_prefixes)]
    load_weights_file(model, source.path, source.mapping, optional=optional, key=source.key)


class BackbonePoolFeatures(Configured, FeatureExtractor):
    """Pooled last feature map of a frozen torchvision/timm CNN; weights from a local file only
    (random init, with a warning, if none).

    Frozen image features; ``fit`` learns nothing, the network is built on first use.
    """

    modality = "image"

    params_model = BackboneParams

    def _build(self) -> None:
        import torch
        source = _source(self.params)
        if source is None:
            log.warning("backbone-pool: no weights file or package given; %s %s keeps its"
                        " random initialisation, so its features carry no learned meaning",
                        self.library, self.backbone)
        build = _torchvision_trunk if self.library == "torchvision" else _timm_trunk
        trunk, mean, std = build(self.backbone, source)
        self.trunk_ = trunk.eval().requires_grad_(False).to(self.device)
        self.mean_ = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std_ = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def _tensor(self, item: Any):
        import torch

        if not isinstance(item, Image.Image):
            from daer_core.data.images import load_rgb
            item = load_rgb(item)
        img = item if item.mode == "RGB" else item.convert("RGB")
        w, h = img.size
        scale = self.image_size / min(w, h)
        img = img.resize((max(self.image_size, round(w * scale)),
                          max(self.image_size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
        img = img.crop((left, top, left + self.image_size, top + self.image_size))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    def _pool(self, fmap):
        if fmap.ndim == 4:                     # B x C x H x W
            flat = fmap.flatten(2)
            return flat.mean(2) if self.pool == "avg" else flat.amax(2)
        if fmap.ndim == 3:                     # B x tokens x C
            return fmap.mean(1) if self.pool == "avg" else fmap.amax(1)
        if fmap.ndim == 2:
            return fmap
        raise ConfigError(f"backbone-pool: {self.backbone} returned a {fmap.ndim}-D feature"
                          " map; expected B x C x H x W or B x tokens x C")

    def transform(self, items: Sequence[Any]) -> np.ndarray:
        """``(N, C)`` pooled features; items are PIL images, image paths or image callables."""
        import torch

        if not hasattr(self, "trunk_"):
            self._build()
        from tqdm.auto import tqdm

        rows = []
        starts = range(0, len(items), self.batch_size)
        for start in tqdm(starts, desc=f"{self.backbone} features", unit="batch", leave=False,
                          disable=True if len(starts) < 2 else None):
            batch = torch.stack([self._tensor(items[i]) for i in
                                 range(start, min(start + self.batch_size, len(items)))])
            batch = ((batch - self.mean_) / self.std_).to(self.device)
            with torch.no_grad():
                rows.append(self._pool(self.trunk_(batch)).float().cpu().numpy())
        if not rows:
            return np.zeros((0, 0))
        return np.concatenate(rows).astype(np.float64)
