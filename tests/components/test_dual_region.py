"""``dual-region`` text attention (Eq. 1-3) against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from plugins.text.dual_region import (DualRegionAttention, DualRegionParams, make_dual_region,
                                      masked_pool)

SEQ = [1.0, 5.0, 2.0, 8.0, 3.0, 0.0, 4.0, 6.0]
# windows are cut at the ends and averaged over the tokens they cover
AVG3 = [6 / 2, 8 / 3, 15 / 3, 13 / 3, 11 / 3, 7 / 3, 10 / 3, 10 / 2]
MAX3 = [5, 5, 8, 8, 8, 4, 6, 6]
AVG7 = [16 / 4, 19 / 5, 19 / 6, 23 / 7, 28 / 7, 23 / 6, 21 / 5, 13 / 4]
MAX7 = [8, 8, 8, 8, 8, 8, 8, 6]


def seq(values, d=1):
    return torch.tensor(values, dtype=torch.float64).reshape(1, -1, 1).repeat(1, 1, d)


def test_defaults_are_the_paper_values():
    p = DualRegionParams()
    assert (p.small_kernel, p.large_kernel, p.hidden, p.shared_mlp) == (3, 7, [512, 1024, 512], True)
    with pytest.raises(ValidationError, match="odd"):
        DualRegionParams(small_kernel=4)


@pytest.mark.parametrize("kernel, avg, mx", [(3, AVG3, MAX3), (7, AVG7, MAX7)])
def test_pooling_both_scales_by_hand(kernel, avg, mx):
    a, m = masked_pool(seq(SEQ), None, kernel)
    assert a.shape == m.shape == (1, 8, 1)
    assert torch.allclose(a.flatten(), torch.tensor(avg, dtype=torch.float64))
    assert torch.allclose(m.flatten(), torch.tensor(mx, dtype=torch.float64))


def test_padding_never_leaks_into_avg_or_max():
    x = seq([1.0, 5.0, 2.0, 8.0, 3.0, 100.0, 100.0, 100.0])  # last three are padding
    mask = torch.tensor([[True] * 5 + [False] * 3])
    a3, m3 = masked_pool(x, mask, 3)
    assert torch.allclose(a3.flatten(), torch.tensor([3, 8 / 3, 5, 13 / 3, 11 / 2, 0, 0, 0],
                                                     dtype=torch.float64))
    assert m3.flatten().tolist() == [5, 5, 8, 8, 8, 0, 0, 0]
    a7, m7 = masked_pool(-x, mask, 7)  # negatives: padding must not win the max either
    assert torch.allclose(a7[0, :5, 0], -torch.tensor([16 / 4, 19 / 5, 19 / 5, 19 / 5, 18 / 4],
                                                      dtype=torch.float64))
    assert m7[0, :5, 0].tolist() == [-1, -1, -1, -1, -2]


def tiny(shared=True):
    """dim 1, one hidden layer of width 1: every weight is a number we can set."""
    att = DualRegionAttention(DualRegionParams(hidden=[1], shared_mlp=shared), 1).double()
    return att


def test_equations_1_and_2_by_hand():
    att = tiny(shared=False)
    with torch.no_grad():
        att.w0.weight.fill_(1.0), att.w0.bias.fill_(-1.0)       # W0(z) = z - 1
        att.w1.weight.fill_(0.5), att.w1.bias.fill_(0.0)        # W1(z) = z / 2
        att.f_small[1].weight.fill_(1.0), att.f_small[1].bias.fill_(-10.0)
        att.f_large[1].weight.fill_(-1.0), att.f_large[1].bias.fill_(2.0)
    c = att.components(seq(SEQ))
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for i in range(8):
        small = sig(max(0.0, (AVG3[i] - 1) + (MAX3[i] - 1)) - 10.0)           # Eq. 1
        large = sig(-max(0.0, AVG7[i] / 2 + MAX7[i] / 2) + 2.0)               # Eq. 2
        assert c["weight_small"][0, i, 0].item() == pytest.approx(small)
        assert c["weight_large"][0, i, 0].item() == pytest.approx(large)
        assert c["output"][0, i, 0].item() == pytest.approx(small * large * SEQ[i])  # Eq. 3


def test_equation_3_multiplies_both_weights_into_the_states():
    att = tiny(shared=False)
    with torch.no_grad():  # zero every weight: the sigmoids see only the last biases
        for p in att.parameters():
            p.zero_()
        att.f_large[-1].bias.fill_(math.log(3.0))  # sigmoid = 0.75; small stays at 0.5
    x = torch.randn(2, 5, 1, dtype=torch.float64)
    c = att.components(x)
    assert torch.allclose(c["weight_small"], torch.full_like(x, 0.5))
    assert torch.allclose(c["weight_large"], torch.full_like(x, 0.75))
    assert torch.allclose(c["output"], 0.375 * x)


def test_shapes_sizes_and_shared_mlp():
    att = make_dual_region(DualRegionParams(), dim=300)
    assert att.f_large is att.f_small                     # one f_theta (Eq. 1 and 2)
    assert att.w0 is not att.w1                           # W0 and W1 are per scale
    linears = [m for m in att.f_small if isinstance(m, torch.nn.Linear)]
    assert [att.w0.in_features, att.w0.out_features] == [300, 512]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 1024), (1024, 512),
                                                                  (512, 300)]
    x = torch.randn(3, 9, 300)
    mask = torch.arange(9).unsqueeze(0) < torch.tensor([[9], [4], [1]])
    c = att.components(x, mask)
    for key in ("avg_small", "max_small", "avg_large", "max_large", "weight_small",
                "weight_large", "output"):
        assert c[key].shape == (3, 9, 300), key
    assert torch.all(c["output"][1, 4:] == 0) and torch.all(c["output"][2, 1:] == 0)
    unshared = DualRegionAttention(DualRegionParams(shared_mlp=False), 8)
    assert unshared.f_large is not unshared.f_small


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    att = DualRegionAttention(DualRegionParams(hidden=[8, 8]), 6).double()
    x = torch.randn(1, 4, 6, dtype=torch.float64)
    padded = torch.cat([x, 50 * torch.randn(1, 3, 6, dtype=torch.float64)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(att(x), att(padded, mask)[:, :4])


def test_wrong_width_is_reported():
    with pytest.raises(ValueError, match=r"\(B, L, 8\)"):
        DualRegionAttention(DualRegionParams(), 8)(torch.zeros(1, 3, 5))
