"""Normalisation kernels: LayerNorm (CrypTen has none) and its affine replacement.

``norm.affine`` (after MPCFormer's replacement of LayerNorm; Li et al., ICLR 2023):
x * a + b with per-channel a, b fixed after training (calibrated or learned): one
product by the owner's secret a, no inverse square root.

``layer_norm``: (x - mu) * (var + eps)^(-1/2) * gamma + beta over the last dimension
(Ba et al., "Layer Normalization", 2016). mu and var are local sums with public scaling
plus one squaring. The inverse square root starts from CrypTen's initial guess
y0 = 2.2 exp(-(v/2 + 0.2)) + 0.2 - v/1024 (8 squarings) and refines it with ``iters``
Goldschmidt steps (Goldschmidt, 1964; Markstein, "Software Division and Square Root
Using Goldschmidt's Algorithms", 2004): g0 = v y0, h0 = y0 / 2, then
r = 1/2 - g h, (g, h) <- (g + g r, h + h r), with 1/sqrt(v) = 2 h. Each step converges
like a Newton-Raphson step y <- y (3 - v y^2) / 2 but costs 2 rounds instead of 3 (g r
and h r are one batched product); all of it runs on one value per row (rounds, not bytes).

The guess is positive only for v < 200, and the iteration is accurate (relative error
< 1e-3) on [0.031, 178] after 5 steps, [0.0063, 190] after 7, [0.0028, 195] after 8
(CrypTen's 3 Newton-Raphson steps: [0.126, 126]). Trained ViTs span more: the shipped
ViT-Lite sees row variances from 9e-4 (the CLS row entering block 0) to 16, its
MPCFormer fine-tune up to 27.5, its MPCViT fine-tune up to 52. LayerNorm is invariant
to a public rescaling of its input (with eps rescaled too), so v is evaluated as
``var_scale`` * (var + eps): the defaults (scale 3.2, 8 steps) cover variances in
[8.8e-4, 60]. v = sum(c^2) (``var_scale`` / n) + ``var_scale`` eps takes one truncation
(the mean, then the rescale, took two): at small variances v holds few fixed-point
units (var 6e-3: 1,260), and each truncation's random unit moves the output by ~1e-3.
Rounds: 1 (square) + 8 (exp) + 1 (g0) + 2 * iters + 1 (normalise) + 1 with a secret
gamma: 28 with the defaults, against 20 for CrypTen's 3 Newton-Raphson steps, which fail
below v = 0.126.
"""

from __future__ import annotations

import torch

import math

from . import costs
from .backend import crypten
from .fixed_point import FixedPoint
from .registry import Protocol, register

__all__ = ["LN_ITERS", "LN_VAR_SCALE", "inv_sqrt_goldschmidt", "layer_norm_reference", "layer_norm_secure"]

LN_ITERS = 8
LN_VAR_SCALE = 3.2


def layer_norm_secure(
    x, weight=None, bias=None, eps: float = 1e-5, iters: int = LN_ITERS, var_scale: float = LN_VAR_SCALE
):
    """LayerNorm of a CrypTensor over its last dimension; ``weight``/``bias`` may be secret."""
    n = x.size(-1)
    centered = x - x.mean(-1, keepdim=True)
    v = centered.square().sum(-1, keepdim=True) * (var_scale / n) + eps * var_scale  # one truncation
    inv_std = inv_sqrt_goldschmidt(v, iters) * var_scale**0.5
    y = centered * inv_std
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def inv_sqrt_goldschmidt(v, iters: int = LN_ITERS):
    """1/sqrt(v) of a positive CrypTensor: CrypTen's exp-based guess, then Goldschmidt steps."""
    y = (v * -0.5 - 0.2).exp() * 2.2 + 0.2 - v * (1.0 / 1024)
    g, h = v * y, y * 0.5
    for _ in range(iters):
        r = 0.5 - g * h
        gh = crypten.stack([g, h])
        gh = gh + gh * r
        g, h = gh[0], gh[1]
    return h * 2.0


def layer_norm_reference(x: torch.Tensor, weight=None, bias=None, eps: float = 1e-5, **_) -> torch.Tensor:
    """Plaintext LayerNorm over the last dimension."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)


def layer_norm_emulate(x: torch.Tensor, fp: FixedPoint, weight=None, bias=None, eps: float = 1e-5,
                       iters: int = LN_ITERS, var_scale: float = LN_VAR_SCALE) -> torch.Tensor:
    """Fixed-point twin of :func:`layer_norm_secure`."""
    xe = fp.encode(x)
    centered = xe - fp.mean(xe)
    v = fp.mul_public(fp.square(centered).sum(-1, keepdim=True), var_scale / x.shape[-1]) + fp.encode(
        torch.tensor(eps * var_scale))
    y = fp.mul_public(fp.exp(fp.mul_public(v, -0.5) - fp.encode(torch.tensor(0.2))), 2.2)
    y = y + fp.encode(torch.tensor(0.2)) - fp.mul_public(v, 1.0 / 1024)
    g, h = fp.mul(v, y), fp.mul_public(y, 0.5)
    for _ in range(iters):
        r = fp.encode(torch.tensor(0.5)) - fp.mul(g, h)
        g, h = g + fp.mul(g, r), h + fp.mul(h, r)
    out = fp.mul(centered, fp.mul_public(fp.mul_public(h, 2.0), var_scale**0.5))
    if weight is not None:
        out = fp.mul(out, fp.encode(weight))
    return out + fp.encode(bias) if bias is not None else out


def _layer_norm_cost(shape: tuple[int, ...], affine: bool = True, iters: int = LN_ITERS) -> costs.Cost:
    numel = math.prod(shape)
    rows = numel // shape[-1]
    inv_sqrt = costs.exp(rows) + costs.mul(rows) + (costs.mul(rows) + costs.mul(2 * rows, rows)) * iters
    return costs.square(numel) + inv_sqrt + costs.mul(numel, rows) + (costs.mul(numel, shape[-1]) if affine else costs.Cost())


def affine_norm_secure(x, weight=None, bias=None, **_):
    """x * a + b with the owner's per-channel a and b."""
    y = x * weight if weight is not None else x
    return y + bias if bias is not None else y


def affine_norm_reference(x: torch.Tensor, weight=None, bias=None, **_) -> torch.Tensor:
    y = x * weight if weight is not None else x
    return y + bias if bias is not None else y


def affine_norm_emulate(x: torch.Tensor, fp: FixedPoint, weight=None, bias=None, **_) -> torch.Tensor:
    y = fp.mul(fp.encode(x), fp.encode(weight)) if weight is not None else fp.encode(x)
    return y + fp.encode(bias) if bias is not None else y


register(Protocol(
    "norm.layer", "norm", layer_norm_secure, layer_norm_reference, layer_norm_emulate,
    "(x - mu) (var + eps)^(-1/2) gamma + beta", "Ba et al. 2016; inverse sqrt by Goldschmidt steps",
    (-4.0, 4.0), 5e-3, _layer_norm_cost,
))
register(Protocol(
    "norm.affine", "norm", affine_norm_secure, affine_norm_reference, affine_norm_emulate,
    "x a + b (per channel)", "MPCFormer (Li et al., ICLR 2023)", (-8.0, 8.0), 1e-3,
    lambda shape: costs.mul(math.prod(shape), shape[-1]),
))
