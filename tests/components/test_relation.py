"""Relation side: concat (Eq. 7), signed power (Eq. 8-9), MLP (Eq. 10), Frobenius (Eq. 11)."""
from __future__ import annotations

import math

import pytest
import torch

from plugins.relation.concat import ConcatFusion, ConcatParams, make_concat
from plugins.relation.enhancement import (IdentityParams, SignedPowerParams, make_identity,
                                          make_signed_power, signed_power)
from plugins.relation.frobenius import FrobeniusLoss, FrobeniusParams, make_frobenius
from plugins.relation.mlp import MLPRelationParams, make_mlp


def test_concat_puts_text_first():
    fuse = make_concat(ConcatParams(), text_dim=2, image_dim=3)
    assert fuse.out_dim == 5
    t = torch.tensor([[1., 2.], [3., 4.]])
    i = torch.tensor([[10., 20., 30.], [40., 50., 60.]])
    assert fuse(t, i).tolist() == [[1, 2, 10, 20, 30], [3, 4, 40, 50, 60]]
    assert ConcatFusion(ConcatParams(), 300, 300).out_dim == 600
    with pytest.raises(ValueError, match="rows"):
        fuse(t, i[:1])


def test_signed_power_values_with_negatives_and_zeros():
    x = torch.tensor([-4.0, -1.0, 0.0, 0.25, 1.0, 9.0], dtype=torch.float64)
    assert signed_power(x, 0.5).tolist() == [-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]
    enh = make_signed_power(SignedPowerParams(), dim=6)
    assert SignedPowerParams().k == 0.6 and enh.out_dim == 6
    expected = [-(4 ** 0.6), -1.0, 0.0, 0.25 ** 0.6, 1.0, 9 ** 0.6]
    assert enh(x.float()).tolist() == pytest.approx(expected, rel=1e-6)


def test_signed_power_gradients_are_finite_and_exact_away_from_zero():
    x = torch.tensor([-4.0, 0.0, 1e-5, 4.0], dtype=torch.float64, requires_grad=True)
    signed_power(x, 0.5, grad_eps=1e-2).sum().backward()
    g = x.grad.tolist()
    assert g[0] == pytest.approx(0.25) and g[3] == pytest.approx(0.25)  # k |x|^(k-1), both signs
    assert math.isfinite(g[1]) and g[1] == pytest.approx(0.5 * 0.01 ** -0.5)
    assert g[2] == pytest.approx(g[1])
    xs = (torch.rand(20, dtype=torch.float64) + 0.1) * torch.tensor([-1.0, 1.0]).repeat(10)
    xs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: signed_power(v, 0.6), (xs,))


def test_learnable_power_starts_at_k_stays_positive_and_gets_the_right_gradient():
    enh = make_signed_power(SignedPowerParams(k=0.6, learnable=True), dim=3)
    assert enh.k.item() == pytest.approx(0.6) and enh.k_raw.requires_grad
    x = torch.tensor([[-2.0, 0.0, 3.0]], dtype=torch.float64)
    enh = enh.double()
    enh(x).sum().backward()
    k = enh.k.item()
    dk = sum(math.copysign(abs(v) ** k * math.log(abs(v)), v) for v in (-2.0, 3.0))
    dsoftplus = 1 / (1 + math.exp(-enh.k_raw.item()))
    assert enh.k_raw.grad.item() == pytest.approx(dk * dsoftplus)
    with torch.no_grad():
        enh.k_raw.fill_(-30.0)
    assert enh.k.item() > 0


def test_identity_enhancement():
    enh = make_identity(IdentityParams(), dim=4)
    x = torch.randn(2, 4)
    assert enh.out_dim == 4 and torch.equal(enh(x), x)


def test_mlp_layer_sizes_and_outputs():
    p = MLPRelationParams()
    assert (p.in_dim, p.hidden, p.activation, p.output) == (600, [1024, 512], "relu", "sigmoid")
    head = make_mlp(p, fused_dim=600)
    assert head.in_dim == 600 and head.layer_sizes == [600, 1024, 512, 1]
    s = head(torch.randn(7, 600) * 10)
    assert s.shape == (7,) and torch.all((s >= 0) & (s <= 1))
    assert make_mlp(MLPRelationParams(in_dim=None), fused_dim=40).in_dim == 40
    assert make_mlp(MLPRelationParams(), fused_dim=40).in_dim == 600  # kept; the core checks it
    lin = make_mlp(MLPRelationParams(in_dim=4, hidden=[3], output="linear"), fused_dim=4)
    with torch.no_grad():
        lin.net[-1].weight.zero_(), lin.net[-1].bias.fill_(-50.0)
    assert torch.all(lin(torch.zeros(2, 4)) == -50.0)
    with pytest.raises(ValueError, match="in_dim=4"):
        lin(torch.zeros(2, 5))


def test_frobenius_loss_by_hand():
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    scores = torch.tensor([[0.8, 0.1], [0.3, 0.6], [1.0, 0.5]])
    total = 0.2 ** 2 + 0.1 ** 2 + 0.3 ** 2 + 0.4 ** 2 + 0.0 + 0.5 ** 2
    assert make_frobenius(FrobeniusParams()).forward(scores, target).item() == pytest.approx(total)
    assert FrobeniusLoss(FrobeniusParams(reduction="mean"))(scores, target).item() == pytest.approx(total / 6)
    assert FrobeniusParams().reduction == "sum"
    with pytest.raises(ValueError, match="shape"):
        FrobeniusLoss(FrobeniusParams())(scores, target.T)


def test_signed_power_keeps_low_precision_dtypes():
    x = torch.tensor([-4.0, 0.0, 9.0], dtype=torch.bfloat16, requires_grad=True)
    y = signed_power(x, 0.5)
    assert y.dtype == torch.bfloat16 and y.tolist() == [-2.0, 0.0, 3.0]
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()
