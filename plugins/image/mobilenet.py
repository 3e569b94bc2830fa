"""``mobilenetv3-large`` image encoder — the image feature extraction module of §3.2 / §4.4.

torchvision's MobileNetV3-Large with the image attention (the paper's ``dual-spatial``, Eq.
4-6) inside every bottleneck, global average pooling, and a fully connected layer to the 300-d
image representation ``R^i`` in place of the ImageNet classifier. The stage-2 classification
layer is not part of the encoder: the trainer puts ``Linear(out_dim, C)`` on top for image
classification and discards it afterwards, as §4.4 describes.

Placement (Figure 2): every torchvision ``InvertedResidual`` computes ``block(x)`` and adds
``x`` when shapes allow. The attention wraps ``features.N.block`` through
:func:`daer_core.attention.insert_attention`, so it re-weights the bottleneck's output
*before* the residual sum, and acts on blocks without a shortcut too.

Weights are never downloaded: ``weights_path`` names a local torchvision state dict
(``torch.save`` file, read with ``weights_only=True``, or ``.safetensors``), loaded before the
attention is inserted; without it the network starts from random weights and a warning says
so.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torchvision import transforms
from torchvision.models import mobilenet_v3_large
from torchvision.models.mobilenetv3 import InvertedResidual

from daer_core.attention import (ATTENTION_START_HELP, AttentionStart, attention_modules,
                                 find_blocks, gated_start, insert_attention, inserted_parameters)
from daer_core.errors import CheckpointError, ConfigError
from daer_core.interfaces.image import ImageAttentionFactory, ImageEncoder
from daer_core.pipeline import restoring_weights
from daer_core.weights import (WeightsSource, check_one_source, find_package_weights,
                               load_weights_file, read_state_dict)
from registry import Params


log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: where this component's params live in a run config, quoted in errors
CONFIG_KEY = "pipeline.image.encoder.params"
#: the paper resizes images to 224 x 224 (§4.4)
PAPER_SIZE = 224
#: MobileNetV3 downsamples 32x; smaller inputs collapse to nothing
MIN_SIZE = 32


class MobileNetV3Params(WeightsSource, Params):
    """Params of the ``mobilenetv3-large`` image encoder (defaults: paper §4.4)."""

    weights_path: str | None = Field(
        None, description="local torchvision mobilenet_v3_large state dict (.pth/.pt via "
                          "torch.load weights_only, or .safetensors); null = random init "
                          "(a warning is logged); never downloaded")
    size: int | Literal["auto"] = Field(
        "auto", description="square input size; auto = the dataset's native image size if it "
                            f"has one, else {PAPER_SIZE} (paper)")
    out_dim: int = Field(300, ge=1, description="image representation width; paper: 300")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the output layer "
                                                        "(torchvision's MobileNetV3 value)")
    pre_logits: bool = Field(
        False, description="keep torchvision's 960->1280 Hardswish layer (loaded from "
                           "weights_path) before the output layer; false = one FC from the "
                           "pooled 960 features")
    bn_momentum: float = Field(
        0.1, gt=0, le=1,
        description="momentum of every batch-norm layer's running statistics (PyTorch's "
                    "default). torchvision builds MobileNetV3 with 0.01, tuned for long "
                    "ImageNet runs: over a few hundred steps from random weights the running "
                    "statistics then lag the weights so far that the network in eval mode "
                    "does far worse than its training loss says (docs/training.md)")
    attention_start: AttentionStart = Field("auto", description=ATTENTION_START_HELP)
    augment: bool = Field(False, description="training transform adds a mild random resized "
                                             "crop (scale 0.8-1)")
    hflip: bool = Field(False, description="training transform adds random horizontal flips "
                                           "(off: captions may say left/right)")

    @model_validator(mode="after")
    def _one_source(self) -> "MobileNetV3Params":
        check_one_source(self.weights_path, self.weights_package, self.weights_file,
                         names=("weights_path", "weights_package", "weights_file"),
                         required=False)
        return self

    @property
    def has_weights(self) -> bool:
        return bool(self.weights_path or self.weights_package)


class _ToRGB:
    """Picklable PIL -> RGB step (DataLoader workers receive the transform)."""

    def __call__(self, image):
        return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image

    def __repr__(self) -> str:
        return "ToRGB()"


def _listing(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def load_torchvision_weights(net: nn.Module, path: str | Path, *, use_pre_logits: bool) -> int:
    """Load a torchvision ``mobilenet_v3_large`` state dict into ``net``; returns the count.

    Every ``features.*`` tensor (and ``classifier.0.*`` with ``use_pre_logits``) must be there
    with the right shape. The rest of the ImageNet classifier is ignored (it is replaced), and
    tensors that torchvision's model does not have are reported: the file is for another
    architecture.
    """
    state = read_state_dict(path, f"{CONFIG_KEY}.weights_path")
    own = net.state_dict()
    needed = ("features.", "classifier.0.") if use_pre_logits else ("features.",)
    missing = [k for k in own if k.startswith(needed) and k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in state if k in own and k.startswith(needed) and state[k].shape != own[k].shape]
    problems = [f"{label} {_listing(items)}" for label, items in
                (("missing", missing), ("unexpected", unexpected),
                 ("wrong shapes (file vs model)", wrong)) if items]
    if problems:
        raise CheckpointError(f"{path}: not a torchvision mobilenet_v3_large state dict: "
                              + "; ".join(problems))
    use = {k: v for k, v in state.items() if k.startswith(needed)}
    net.load_state_dict(use, strict=False)
    return len(use)


class MobileNetV3Encoder(ImageEncoder):
    """MobileNetV3-Large (+ attention in every bottleneck) -> pool -> FC: ``(B,3,S,S) -> (B,D)``."""

    def __init__(self, params: MobileNetV3Params, attention: ImageAttentionFactory | None = None,
                 native_image_size: int | None = None):
        super().__init__()
        self.params = params
        size = params.size if params.size != "auto" else (native_image_size or PAPER_SIZE)
        if int(size) < MIN_SIZE:
            raise ConfigError(f"{CONFIG_KEY}.size: {size} is below {MIN_SIZE}, the smallest "
                              "input MobileNetV3 (stride 32) can take")
        self.image_size = int(size)
        self.out_dim = int(params.out_dim)
        net = mobilenet_v3_large(weights=None)
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = params.bn_momentum
        if restoring_weights():
            pass  # a run's checkpoint provides every weight next
        elif params.has_weights:
            path = params.weights_path or find_package_weights(
                params.weights_package, params.weights_file,
                key=f"{CONFIG_KEY}.weights_package")
            if params.key_mapping == "by-name":
                count = load_torchvision_weights(net, path, use_pre_logits=params.pre_logits)
            else:  # a file whose tensor names differ, in torchvision's order
                head = [k for k in net.state_dict() if k.startswith("classifier.")
                        and not (params.pre_logits and k.startswith("classifier.0."))]
                count = load_weights_file(net, path, "by-position", optional=head,
                                          key=f"{CONFIG_KEY}.weights_path").loaded
            log.info("mobilenetv3-large: %d tensors loaded from %s", count, path)
        else:
            log.warning("mobilenetv3-large: no %s.weights_path given, the backbone starts from "
                        "random weights", CONFIG_KEY)
        self.features = net.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        if params.pre_logits:
            self.pre_logits = nn.Sequential(net.classifier[0], net.classifier[1])
            width = net.classifier[0].out_features
        else:
            self.pre_logits = nn.Identity()
            width = net.classifier[0].in_features
        self.dropout = nn.Dropout(params.dropout)
        self.fc = nn.Linear(width, self.out_dim)
        #: dotted names of the bottleneck branches (``features.N.block``)
        self.attention_places: list[str] = [
            f"features.{name}.block" for name in find_blocks(self.features, _is_bottleneck)]
        #: dotted names of the inserted attention modules (empty without attention)
        self.attention_names: list[str] = []
        if attention is not None:
            sample = torch.zeros(1, 3, 64, 64)  # channels do not depend on the size
            self.attention_names = insert_attention(
                self, attention, self.attention_places, sample,
                identity_start=gated_start(params.attention_start, params.has_weights))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(images)).flatten(1)
        return self.fc(self.dropout(self.pre_logits(x)))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map of MobileNetV3's ``features`` (960 channels), before pooling."""
        return self.features(images)

    def drop_projection(self) -> None:
        self.fc = nn.Identity()
        self.out_dim = int(self.pre_logits[0].out_features if self.params.pre_logits
                           else self.features[-1].out_channels)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The torchvision backbone's weights (and the pre-logits layer with ``pre_logits``)
        when ``weights_path`` is configured; inserted attention and the output FC are new."""
        if not self.params.has_weights:
            return []
        new = {id(p) for p in inserted_parameters(self)}
        loaded = [*self.features.parameters(), *self.pre_logits.parameters()]
        return [p for p in loaded if id(p) not in new]

    def attentions(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of every inserted attention."""
        return attention_modules(self)

    def transform(self, train: bool = False) -> Callable:
        """PIL image -> normalised ``(3, S, S)`` tensor (ImageNet statistics)."""
        s = self.image_size
        steps: list = [_ToRGB()]
        if train and self.params.augment:
            steps.append(transforms.RandomResizedCrop((s, s), scale=(0.8, 1.0),
                                                      ratio=(0.9, 1.1)))
        else:
            steps.append(transforms.Resize((s, s)))
        if train and self.params.hflip:
            steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        return transforms.Compose(steps)


def _is_bottleneck(_name: str, module: nn.Module) -> bool:
    return isinstance(module, InvertedResidual)


def make_mobilenetv3_large(params: MobileNetV3Params,
                           attention: ImageAttentionFactory | None = None,
                           native_image_size: int | None = None) -> MobileNetV3Encoder:
    """DAER image module (§3.2): torchvision MobileNetV3-Large (local weights or random init),
    attention in every bottleneck before the residual sum, global pool, FC 300.
    """
    return MobileNetV3Encoder(params, attention, native_image_size)
