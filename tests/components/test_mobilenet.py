"""``mobilenetv3-large``: attention inside every bottleneck, local weights, transforms."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.mobilenetv3 import InvertedResidual

from daer_core.attention import Attended
from daer_core.errors import CheckpointError, ConfigError
from plugins.image.dual_spatial import DualSpatialAttention, DualSpatialParams
from plugins.image.mobilenet import MobileNetV3Encoder, MobileNetV3Params, make_mobilenetv3_large

SIZE = 64


def build(attention=lambda c: DualSpatialAttention(DualSpatialParams(), c),
          **kw) -> MobileNetV3Encoder:
    torch.manual_seed(0)
    return make_mobilenetv3_large(MobileNetV3Params(**{"size": SIZE, **kw}), attention)


def test_defaults_are_the_paper_values():
    p = MobileNetV3Params()
    assert p.out_dim == 300 and p.weights_path is None and p.size == "auto"
    assert build(attention=None, size="auto").image_size == 224
    enc = make_mobilenetv3_large(MobileNetV3Params(), None, native_image_size=96)
    assert enc.image_size == 96
    with pytest.raises(ConfigError, match="size"):
        build(size=16)


def test_every_bottleneck_carries_an_attention_that_runs():
    enc = build()
    blocks = [(n, m) for n, m in enc.features.named_children() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 15
    for name, block in blocks:
        assert isinstance(block.block, Attended), name
        assert isinstance(block.block.attention, DualSpatialAttention), name
    assert enc.attention_names == [f"features.{n}.block.attention" for n, _ in blocks]
    ran = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: ran.append(n))
             for n, m in enc.attentions()]
    out = enc(torch.randn(2, 3, SIZE, SIZE))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 300)
    assert ran == enc.attention_names
    # attention channel counts follow the blocks' output widths
    assert [m.channels for _, m in enc.attentions()][:3] == [16, 24, 24]


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_attention_sits_before_the_residual_sum():
    enc = build(attention=lambda c: Zero())
    enc.eval()
    x = torch.randn(1, 16, 16, 16)
    block = enc.features[1]  # features.1: 16 -> 16, stride 1, has the shortcut
    assert block.use_res_connect
    assert torch.equal(block(x), x)  # branch zeroed by the attention, shortcut kept


def test_no_attention_leaves_the_blocks_alone():
    enc = build(attention=None)
    assert enc.attention_names == [] and not any(isinstance(m, Attended) for m in enc.modules())
    assert enc(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 300)


def test_local_weights_are_loaded_before_the_attention(tmp_path):
    torch.manual_seed(7)
    ref = mobilenet_v3_large(weights=None)
    torch.save(ref.state_dict(), tmp_path / "mnv3.pth")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()},
              str(tmp_path / "mnv3.safetensors"))
    for name in ("mnv3.pth", "mnv3.safetensors"):
        enc = build(weights_path=str(tmp_path / name), pre_logits=True)
        assert torch.equal(enc.features[1].block.inner[0][0].weight, ref.features[1].block[0][0].weight)
        assert torch.equal(enc.features[16][0].weight, ref.features[16][0].weight)
        assert torch.equal(enc.pre_logits[0].weight, ref.classifier[0].weight)


def test_weight_file_problems_are_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline.image.encoder.params.weights_path.*nope.pth"):
        build(weights_path=str(tmp_path / "nope.pth"))
    state = mobilenet_v3_large(weights=None).state_dict()
    del state["features.3.block.0.0.weight"]
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    state["layer1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        build(weights_path=str(tmp_path / "bad.pth"))
    msg = str(err.value)
    assert "bad.pth" in msg and "missing features.3.block.0.0.weight" in msg
    assert "unexpected layer1.weight" in msg and "features.0.0.weight (8, 3, 3, 3)" in msg
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="junk.pth"):
        build(weights_path=str(tmp_path / "junk.pth"))


def test_transform_resizes_and_normalises():
    enc = build(attention=None, augment=True, hflip=True)
    img = Image.new("L", (90, 40), color=128)
    for train in (False, True):
        t = enc.transform(train)(img)
        assert t.shape == (3, SIZE, SIZE) and t.dtype == torch.float32
    t = enc.transform(False)(Image.new("RGB", (10, 10), color=(124, 116, 104)))
    assert t.abs().max() < 0.02  # ImageNet mean colour maps to ~0
    assert "RandomHorizontalFlip" not in repr(build(attention=None).transform(True))


def test_every_batchnorm_layer_takes_the_configured_momentum():
    """torchvision builds MobileNetV3 with momentum 0.01; from random weights, a few hundred
    steps left the running statistics so far behind that a `shapes` run scored at chance in
    eval mode while its training loss fell (docs/training.md). The encoder's default is 0.1,
    in every batch-norm layer, attention inserted or not, and the key can restore 0.01."""
    def momenta(enc):
        return {m.momentum for m in enc.modules() if isinstance(m, nn.BatchNorm2d)}

    assert momenta(build()) == {0.1}
    assert momenta(build(attention=None)) == {0.1}
    assert momenta(build(bn_momentum=0.01)) == {0.01}
    with pytest.raises(ValueError, match="bn_momentum"):
        MobileNetV3Params(bn_momentum=0)


def test_weights_renamed_in_torchvision_order_load_by_position(tmp_path):
    """The shared weights params (WeightsSource): a file whose tensor names differ loads with
    key_mapping: by-position, as the timm encoder and backbone-pool take it."""
    torch.manual_seed(5)
    ref = mobilenet_v3_large(weights=None)
    renamed = {f"backbone.{i}": v for i, v in enumerate(ref.state_dict().values())}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match="missing features"):
        build(weights_path=str(tmp_path / "renamed.pth"))
    enc = build(weights_path=str(tmp_path / "renamed.pth"), key_mapping="by-position")
    assert torch.equal(enc.features[16][0].weight, ref.features[16][0].weight)
    assert torch.equal(enc.features[1].block.inner[0][0].weight, ref.features[1].block[0][0].weight)
    assert enc.pretrained_parameters()                    # counted as pretrained
    with pytest.raises(ValueError, match="weights_path"):
        MobileNetV3Params(weights_path="a.pth", weights_package="some-package")
