"""The ``timm`` image encoder: local weights, attention in the blocks, shapes, transforms."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from PIL import Image
from torch import nn

from daer_core.attention import attention_modules
from daer_core.errors import ConfigError
from plugins.image.timm_encoder import (TimmImageEncoder, TimmParams, attention_places,
                                        build_timm_model)
from daer_core.weights import WeightsError
from registry.errors import ParamsError

MODEL = "efficientnet_lite0"


class Gate(nn.Module):
    """A per-channel gate that counts its calls (stands in for any image attention)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.full((channels,), 0.5))
        self.calls = 0

    def forward(self, x):
        assert x.shape[1] == self.channels
        self.calls += 1
        return x * self.scale.view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A full (with classifier) efficientnet_lite0 checkpoint, saved under foreign names."""
    torch.manual_seed(1)
    net, _ = build_timm_model(MODEL)
    state = net.state_dict()
    folder = tmp_path_factory.mktemp("ckpt")
    torch.save(state, folder / "by_name.pth")
    torch.save(OrderedDict((f"_t{i}", v) for i, v in enumerate(state.values())),
               folder / "by_position.pth")
    return folder, state


def test_by_position_and_by_name_load_the_same_backbone(checkpoint):
    folder, state = checkpoint
    a = TimmImageEncoder(TimmParams(model=MODEL, size=32, weights_path=str(folder / "by_name.pth")))
    b = TimmImageEncoder(TimmParams(model=MODEL, size=32, key_mapping="by-position",
                                    weights_path=str(folder / "by_position.pth")))
    for enc in (a, b):
        assert torch.equal(enc.backbone.conv_stem.weight, state["conv_stem.weight"])
        assert torch.equal(enc.backbone.blocks[6][0].bn3.running_var,
                           state["blocks.6.0.bn3.running_var"])
        assert enc.load_report.loaded == len(state)  # classifier loaded, then dropped
        assert isinstance(enc.backbone.get_classifier(), nn.Identity)


def test_by_position_mismatch_names_first_bad_tensor(checkpoint, tmp_path):
    _, state = checkpoint
    shuffled = list(state.items())
    shuffled[0], shuffled[1] = shuffled[1], shuffled[0]  # stem conv and its batch-norm swapped
    torch.save(OrderedDict((f"_t{i}", v) for i, (_, v) in enumerate(shuffled)), tmp_path / "x.pth")
    params = TimmParams(model=MODEL, size=32, key_mapping="by-position",
                        weights_path=str(tmp_path / "x.pth"))
    with pytest.raises(WeightsError, match=r"weights_path=.*tensor #0: file '_t0' has shape "
                                           r"\[32\] but model 'conv_stem.weight' has "
                                           r"\[32, 3, 3, 3\]"):
        TimmImageEncoder(params)


def test_by_name_on_renamed_file_suggests_by_position(checkpoint):
    folder, _ = checkpoint
    with pytest.raises(WeightsError, match="try key_mapping: by-position"):
        TimmImageEncoder(TimmParams(model=MODEL, size=32,
                                    weights_path=str(folder / "by_position.pth")))


def test_attention_goes_into_every_block_before_the_residual():
    enc = TimmImageEncoder(TimmParams(model=MODEL, size=32, out_dim=12), attention=Gate)
    inserted = attention_modules(enc.backbone)
    # efficientnet_lite0: 1 + 2 + 2 + 3 + 3 + 4 + 1 blocks
    assert len(inserted) == 16
    assert enc.attention_names[0] == "blocks.0.0.bn2.attention"  # depthwise-separable block
    assert enc.attention_names[1] == "blocks.1.0.bn3.attention"  # MBConv: end of the branch
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 12)
    assert all(m.calls == 1 for _, m in inserted)  # every hook fired in one forward
    out.sum().backward()
    assert all(m.scale.grad is not None for _, m in inserted)


def test_places_options():
    net, _ = build_timm_model(MODEL, num_classes=0)
    assert attention_places(net, "block-output", stages=[1]) == ["blocks.1.0", "blocks.1.1"]
    assert attention_places(net, "pre-residual", stages=[6]) == ["blocks.6.0.bn3"]
    with pytest.raises(ConfigError, match=r"attention_stages \[9\] out of range.*7 stages"):
        attention_places(net, stages=[9])
    enc = TimmImageEncoder(TimmParams(model=MODEL, size=32, attention_modules=["blocks.6.0"]),
                           attention=Gate)
    assert enc.attention_names == ["blocks.6.0.attention"]


def test_freeze_trains_only_attention_and_projection():
    enc = TimmImageEncoder(TimmParams(model=MODEL, size=32, freeze=True, out_dim=4),
                           attention=Gate)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".attention." in n or n.startswith("proj.") for n in trainable)
    assert "proj.weight" in trainable
    enc.train()
    assert not enc.backbone.bn1.training and enc.proj.training


def test_size_auto_and_transform_use_model_statistics():
    enc = TimmImageEncoder(TimmParams(model=MODEL, out_dim=8), native_image_size=40)
    assert enc.image_size == 40
    assert TimmImageEncoder(TimmParams(model=MODEL, size="auto")).image_size == 224
    image = Image.new("RGB", (70, 50), (124, 116, 104))  # ~ the ImageNet mean colour
    x = enc.transform(train=True)(image)
    assert x.shape == (3, 40, 40)
    assert x.abs().max() < 0.02  # normalised with the model's own mean / std
    cropped = TimmImageEncoder(TimmParams(model=MODEL, size=32, crop_pct=0.5)).transform()(image)
    assert cropped.shape == (3, 32, 32)


def test_params_errors_are_clear():
    from registry import load_plugins
    reg = load_plugins().registry
    with pytest.raises(ParamsError,
                       match="unknown timm model 'efficientnet_lit0'.*efficientnet_lite0"):
        reg.create("image_encoder", "timm", {"model": "efficientnet_lit0"})
    with pytest.raises(ParamsError, match="weights_path or weights_package, not both"):
        reg.create("image_encoder", "timm", {"weights_path": "a.pth", "weights_package": "b"})
    with pytest.raises(WeightsError, match=r"pipeline.image.encoder.params.weights_package: "
                                           r"package 'no-such-pkg' is not installed"):
        reg.create("image_encoder", "timm", {"weights_package": "no-such-pkg", "size": 32},
                   attention=None, native_image_size=None)


def test_random_init_is_logged(caplog):
    with caplog.at_level("WARNING"):
        TimmImageEncoder(TimmParams(model=MODEL, size=32))
    assert "random initialisation" in caplog.text


def test_loading_makes_no_network_connection(checkpoint, monkeypatch):
    import socket

    def refuse(*_a, **_k):
        raise AssertionError("timm encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    folder, _ = checkpoint
    params = TimmParams(model=MODEL, size=32, weights_path=str(folder / "by_name.pth"))
    enc = TimmImageEncoder(params)
    assert enc.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 300)


def test_other_timm_layouts():
    resnet, _ = build_timm_model("resnet18", num_classes=0)
    assert attention_places(resnet)[:2] == ["layer1.0.bn2", "layer1.1.bn2"]  # BasicBlock
    # MobileNetV3 adds a 1x1 head conv after pooling: the width is measured, not assumed
    mnv3 = TimmImageEncoder(TimmParams(model="mobilenetv3_small_050", size=32, out_dim=3),
                            attention=Gate)
    assert mnv3.feature_dim == 1024 and mnv3.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert mnv3.attention_names[-1] == "blocks.5.0.attention"  # ConvBnAct: block output
    with pytest.raises(ConfigError, match="only takes 224 px inputs"):
        TimmImageEncoder(TimmParams(model="vit_tiny_patch16_224", size=32))
    with pytest.raises(ConfigError,
                       match=r"cannot place image attention.*expected a \(B, C, H, W\)"):
        TimmImageEncoder(TimmParams(model="vit_tiny_patch16_224", size=224), attention=Gate)
