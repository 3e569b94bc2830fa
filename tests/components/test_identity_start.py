"""Attention inserted into a pretrained backbone starts as the identity (and still learns)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large

from daer_core.attention import (Attended, attention_gates, gated_start, insert_attention,
                                 inserted_parameters)
from plugins.image.dual_spatial import DualSpatialAttention, DualSpatialParams, make_dual_spatial
from plugins.image.mobilenet import MobileNetV3Encoder, MobileNetV3Params


def dual_spatial(channels: int) -> DualSpatialAttention:
    return make_dual_spatial(DualSpatialParams(), channels)


class TwoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.b(self.a(x)).mean(dim=(2, 3))


@pytest.fixture
def torchvision_weights(tmp_path):
    """A torchvision mobilenet_v3_large state dict on disk (random values: the test is about
    what insertion does to whatever weights were loaded)."""
    torch.manual_seed(0)
    path = tmp_path / "mnv3.pth"
    torch.save(mobilenet_v3_large(weights=None).state_dict(), path)
    return str(path)


def test_gated_insertion_computes_exactly_what_the_plain_model_computes():
    torch.manual_seed(0)
    plain = TwoBlocks()
    gated = TwoBlocks()
    gated.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8)
    insert_attention(gated, dual_spatial, ["a", "b"], x, identity_start=True)
    assert [n for n, _ in attention_gates(gated)] == ["a", "b"]
    assert torch.equal(gated(x), plain(x))


def test_plain_insertion_changes_the_output_and_has_no_gate():
    torch.manual_seed(0)
    plain = TwoBlocks()
    paper = TwoBlocks()
    paper.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8)
    insert_attention(paper, dual_spatial, ["a", "b"], x)
    assert attention_gates(paper) == []
    assert not any(k.endswith("gate") for k in paper.state_dict())  # old checkpoints still load
    assert not torch.allclose(paper(x), plain(x))


def test_a_gate_at_one_is_exactly_the_papers_equation_6():
    torch.manual_seed(0)
    att = dual_spatial(4)
    wrapped = Attended(nn.Identity(), att, gated=True)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        wrapped.gate.fill_(1.0)
    assert torch.allclose(wrapped(x), att(x))


def test_the_gate_learns_and_then_the_attention_does():
    torch.manual_seed(0)
    model = TwoBlocks()
    x = torch.randn(4, 3, 8, 8)
    insert_attention(model, dual_spatial, ["a", "b"], x, identity_start=True)
    new = inserted_parameters(model)
    assert len(new) == 2 * 5  # per place: two convs (weight, bias) and one gate
    opt = torch.optim.SGD(new, lr=0.5)
    target = torch.randn(4, 6)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        opt.step()
    assert all(abs(g) > 0 for _, g in attention_gates(model))
    conv = model.a.attention.conv_small.weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0  # non-zero once the gate is


@pytest.mark.parametrize("setting, pretrained, gated", [
    ("auto", True, True), ("auto", False, False), ("identity", False, True),
    ("paper", True, False)])
def test_attention_start_setting(setting, pretrained, gated):
    assert gated_start(setting, pretrained) is gated


def test_mobilenet_with_weights_starts_as_its_plain_backbone(torchvision_weights):
    params = dict(weights_path=torchvision_weights, size=64, out_dim=8)
    torch.manual_seed(1)
    plain = MobileNetV3Encoder(MobileNetV3Params(**params)).eval()
    attended = MobileNetV3Encoder(MobileNetV3Params(**params), attention=dual_spatial).eval()
    assert len(attention_gates(attended)) == len(attended.attention_places) > 10
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(attended.features(x), plain.features(x), atol=1e-6)
    # the paper's plain start stays available, and is what a randomly initialised net gets
    paper = MobileNetV3Encoder(MobileNetV3Params(**params, attention_start="paper"),
                               attention=dual_spatial)
    scratch = MobileNetV3Encoder(MobileNetV3Params(size=64, out_dim=8), attention=dual_spatial)
    assert attention_gates(paper) == [] and attention_gates(scratch) == []


def test_mobilenet_pretrained_parameters_are_the_loaded_backbone_only(torchvision_weights):
    enc = MobileNetV3Encoder(MobileNetV3Params(weights_path=torchvision_weights, size=64,
                                               out_dim=8), attention=dual_spatial)
    pretrained = {id(p) for p in enc.pretrained_parameters()}
    assert {id(p) for p in enc.features.parameters()} - pretrained == {
        id(p) for p in inserted_parameters(enc)}
    assert not pretrained & {id(p) for p in enc.fc.parameters()}
    scratch = MobileNetV3Encoder(MobileNetV3Params(size=64, out_dim=8))
    assert scratch.pretrained_parameters() == []
