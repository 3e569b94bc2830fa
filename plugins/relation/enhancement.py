"""Enhancements — Eq. 8-9 (``signed-power``) and ``identity`` (no enhancement, the ablations).

Eq. 8 raises the fused representation to the power ``k`` (0.6 in §4.4); Eq. 9 says negative
values keep their sign: ``-|x|^k``. Together, element-wise::

    y = sign(x) * |x|^k

With ``k < 1`` this pulls magnitudes towards 1 — small values grow, large ones shrink — which
is the paper's "exponential enhancement" of Figure 3. Zeros stay zero.

Gradient: ``dy/dx = k |x|^(k-1)`` is infinite at 0 for ``k < 1``. The forward pass is exact;
the backward pass evaluates the slope at ``max(|x|, grad_eps)``, so it is finite everywhere
(``k * grad_eps^(k-1)`` ~ 9.5 at 0 for the defaults), equal to the true slope wherever
``|x| >= grad_eps``, and continuous. With ``learnable: true``, ``k = softplus(k_raw)`` is a
trained parameter (always > 0) starting at ``k``; ``dy/dk = y ln|x|`` (0 at ``x = 0``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.interfaces.relation import Enhancement
from registry import Params


class SignedPowerParams(Params):
    """Params of the ``signed-power`` enhancement (default: paper §4.4)."""

    k: float = Field(0.6, gt=0, description="the power k of Eq. 8; paper: 0.6 (k < 1 pulls "
                                            "magnitudes towards 1)")
    learnable: bool = Field(False, description="train k as a parameter (kept > 0 through a "
                                               "softplus), starting at k")
    grad_eps: float = Field(1e-3, gt=0, description="the backward pass takes the slope at "
                                                    "max(|x|, grad_eps): finite at 0")


class _SignedPowerFn(torch.autograd.Function):
    """``sign(x) |x|^k`` with the slope evaluated at ``max(|x|, eps)`` in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, eps: float) -> torch.Tensor:
        xf = _wide(x)  # bf16/fp16 inputs are computed in float32, returned in their dtype
        kx = k.to(xf.dtype)
        y = torch.sign(xf) * xf.abs().pow(kx)
        ctx.save_for_backward(x, y, k)
        ctx.eps = eps
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y, k = ctx.saved_tensors
        xf, gf = _wide(x), grad.to(y.dtype)
        a = xf.abs().clamp_min(ctx.eps)
        kx = k.to(xf.dtype)
        grad_x = (gf * kx * a.pow(kx - 1)).to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_k = None
        if ctx.needs_input_grad[1]:
            grad_k = (gf * y * torch.log(a)).sum().to(k.dtype).reshape(k.shape)
        return grad_x, grad_k, None


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def signed_power(x: torch.Tensor, k: float | torch.Tensor,
                 grad_eps: float = SignedPowerParams.model_fields["grad_eps"].default
                 ) -> torch.Tensor:
    """``sign(x) * |x|^k`` (Eq. 8-9) with finite gradients at 0 (see the module docstring).

    ``grad_eps`` defaults to the params model's, the one place the default is written.
    """
    kt = k if isinstance(k, torch.Tensor) else torch.tensor(float(k), device=x.device)
    return _SignedPowerFn.apply(x, kt, float(grad_eps))


class SignedPowerEnhancement(Enhancement):
    """Element-wise ``sign(x) |x|^k``: ``(N, D) -> (N, D)``."""

    elementwise = True  # one k for every element

    def __init__(self, params: SignedPowerParams, dim: int):
        super().__init__()
        self.out_dim = int(dim)
        self.grad_eps = float(params.grad_eps)
        self.learnable = bool(params.learnable)
        if self.learnable:
            self.k_raw = nn.Parameter(torch.tensor(math.log(math.expm1(params.k))))
        else:
            self.register_buffer("k_fixed", torch.tensor(float(params.k)))

    @property
    def k(self) -> torch.Tensor:
        """The current power (a 0-d tensor)."""
        return F.softplus(self.k_raw) if self.learnable else self.k_fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return signed_power(x, self.k, self.grad_eps)

    def extra_repr(self) -> str:
        return f"dim={self.out_dim}, k={self.k.item():.4g}, learnable={self.learnable}"


class IdentityParams(Params):
    """The ``identity`` enhancement has no params."""


class IdentityEnhancement(Enhancement):
    """No enhancement (the DAER-C / -I / -T / -I-T ablations): ``y = x``."""

    elementwise = True

    def __init__(self, params: IdentityParams, dim: int):
        super().__init__()
        self.out_dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def make_signed_power(params: SignedPowerParams, dim: int) -> SignedPowerEnhancement:
    """DAER enhancement (Eq. 8-9): sign(x)*|x|^k, k = 0.6, finite gradient at 0; k optionally
    learnable.
    """
    return SignedPowerEnhancement(params, dim)


def make_identity(params: IdentityParams, dim: int) -> IdentityEnhancement:
    """No enhancement (y = x), as in the paper's ablations."""
    return IdentityEnhancement(params, dim)
