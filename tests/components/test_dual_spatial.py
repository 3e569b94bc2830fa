"""``dual-spatial`` image attention (Eq. 4-6) against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from plugins.image.dual_spatial import DualSpatialAttention, DualSpatialParams, make_dual_spatial

# 3 channels on a 2 x 2 map
X = torch.tensor([[[[1., 2.], [3., 4.]],
                   [[5., -6.], [0., 2.]],
                   [[0., 1.], [-3., 9.]]]], dtype=torch.float64)
AVG = [[2.0, -1.0], [0.0, 5.0]]   # channel means at each position
MAX = [[5.0, 2.0], [3.0, 9.0]]    # channel maxima


def test_defaults_are_the_paper_values():
    p = DualSpatialParams()
    assert (p.small_kernel, p.large_kernel) == (3, 7)
    with pytest.raises(ValidationError, match="odd"):
        DualSpatialParams(large_kernel=6)


def test_channel_avg_and_max_maps_by_hand():
    pooled = DualSpatialAttention.pooled(X)
    assert pooled.shape == (1, 2, 2, 2)
    assert pooled[0, 0].tolist() == AVG and pooled[0, 1].tolist() == MAX


def test_conv_sizes_keep_the_map_size():
    att = make_dual_spatial(DualSpatialParams(), channels=16)
    assert att.conv_small.weight.shape == (1, 2, 3, 3)
    assert att.conv_large.weight.shape == (1, 2, 7, 7)
    c = att.components(torch.randn(2, 16, 5, 9))
    assert c["pooled"].shape == (2, 2, 5, 9)
    assert c["weight_small"].shape == c["weight_large"].shape == (2, 1, 5, 9)
    assert c["output"].shape == (2, 16, 5, 9)


def test_equations_4_to_6_by_hand():
    att = DualSpatialAttention(DualSpatialParams(), 3).double()
    with torch.no_grad():
        for p in att.parameters():
            p.zero_()
        att.conv_small.weight[0, 0, 1, 1] = 1.0   # 3x3 centre tap on F_avg
        att.conv_large.weight[0, 1, 3, 3] = 0.5   # 7x7 centre tap on F_max
        att.conv_large.bias.fill_(-1.0)
    c = att.components(X)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for i in range(2):
        for j in range(2):
            small, large = sig(AVG[i][j]), sig(0.5 * MAX[i][j] - 1.0)
            assert c["weight_small"][0, 0, i, j].item() == pytest.approx(small)
            assert c["weight_large"][0, 0, i, j].item() == pytest.approx(large)
            for ch in range(3):  # the same weight for every channel at a position
                assert c["output"][0, ch, i, j].item() == pytest.approx(
                    small * large * X[0, ch, i, j].item())


def test_neighbours_reach_through_the_large_kernel_only():
    att = DualSpatialAttention(DualSpatialParams(), 1).double()
    with torch.no_grad():
        for p in att.parameters():
            p.zero_()
        att.conv_small.weight[0, 0, 0, 0] = 1.0   # looks 1 up-left
        att.conv_large.weight[0, 0, 0, 0] = 1.0   # looks 3 up-left
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[0, 0, 2, 2] = 4.0
    c = att.components(x)
    assert c["weight_small"][0, 0, 3, 3].item() == pytest.approx(1 / (1 + math.exp(-4)))
    assert c["weight_large"][0, 0, 5, 5].item() == pytest.approx(1 / (1 + math.exp(-4)))
    assert c["weight_small"][0, 0, 5, 5].item() == pytest.approx(0.5)


def test_bias_init_starts_near_identity():
    att = make_dual_spatial(DualSpatialParams(bias_init=6.0), channels=4)
    with torch.no_grad():
        att.conv_small.weight.zero_(), att.conv_large.weight.zero_()
    x = torch.randn(1, 4, 6, 6)
    assert torch.allclose(att(x), x, rtol=0.01, atol=1e-6)
