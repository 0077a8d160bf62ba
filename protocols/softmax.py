"""Softmax kernels and their MPC-friendly replacements (rows of S = Q K^T / sqrt(d)).

``softmax.exact``: exp(s - m) / sum exp(s - m), which is softmax(s) for any shift m; m
close to the row maximum keeps every exponential in a known range. All three nonlinear
steps are Fourier series evaluated through the dealer's trigonometric masks
(:mod:`protocols.periodic`; after SHAFT, Kei and Chow, NDSS 2025, whose constant-round
softmax also avoids CrypTen's comparison tree), two rounds each:

1. m by a tree of m = b + ReLU(a - b) over halves (ceil(log2 N) levels), ReLU(d) =
   d / 2 + |d| / 2 with |d| / 2 by 32 odd cosine harmonics of period 256 (least squares on
   |d| <= 96): between 0.071 below and 0.203 above ReLU, so over 8 levels (N <= 256) m is
   between 0.57 below and 1.62 above max s, and s - m stays in exp's range below for rows
   spread up to 96 (the error only moves the shift; 48 harmonics, 0.047 and 0.135, cost
   half as much again). CrypTen compares (8 rounds and 432 bytes per element per level).
2. exp(x), x = s - m in [-98, 1.5], by 48 harmonics of period 128 (ridge-regularised
   least squares: error 8.5e-6, below the 16-bit unit; coefficients small enough for
   28-bit encodings; 64 harmonics reach 2.3e-6 with a third more masks, which at 197
   tokens are the largest part of a forward pass's correlated randomness).
3. The row sum S is in [e^-1, N e]; 1 / S by P harmonics of period P = 2^ceil(log2 3.75 N)
   fitted for relative error (2e-3 for N = 65 and 197), then one Newton-Raphson step
   y (2 - S y) whose two products ride along the numerators' (numerator y and S y in one
   product, then one product by 2 - S y): relative error ~4e-6. Beyond N = 273 the
   harmonics stop at 1,024 and further steps (4 rounds each) make up the precision.

Rounds: 2 ceil(log2 N) + 8 (22 for N = 65) where CrypTen's max, exp and reciprocal took
112. Valid range: rows whose spread max s - min s is at most 96 (beyond, ReLU and exp
wrap with their periods; the shipped checkpoints' rows reach 73).

``softmax.relu`` (MPCViT's RSAttn, Zeng et al., ICCV 2023): ReLU(s) / (sum ReLU(s) + N d).
``softmax.2relu`` (MPCFormer, Li et al., ICLR 2023): (ReLU(s) + d) / (sum ReLU(s) + N d).
``softmax.2quad`` (MPCFormer): (s + c)^2 / sum (s + c)^2, c = 5.
``softmax.scaling`` (MPCViT's ScaleAttn): s / N: one truncation by N, folded into the
logits' own truncation inside an attention (no round of its own).

The three normalised replacements divide by the row mean m = sum / N with a reciprocal
of r = k m for r in [0.01, 600]: the guess y0 = 0.8 / (geometric middle of r's piece),
the range cut into pieces of ratio 4 (:mod:`protocols.range_guess`: one batched
sign test with the dealer's keys, 1 round), puts r y0 in [0.4, 1.6]; then 5
Newton-Raphson steps y <- y (2 - r y) reach relative error 1e-7 (2 rounds each: 11 in
all, where CrypTen's exponential guess and 10 steps took 28). 2Quad takes k = 1/8 (row means in
[0.08, 4800]: fine-tuned ViT-Lite rows reach 650, beyond CrypTen's range). The ReLU
forms take k = 10 and the mean floor d = 1e-2 (the papers' eps, scaled with N): a row
whose scores are all negative or ~0 has a ReLU mean of ~0, where the reciprocal diverges
and 16-bit fixed point holds no information; with the floor every mean is in
[1e-2, 60] (r in [0.1, 600], the reciprocal's range), such rows become ~0 instead of
noise, and no row amplifies the numerators' truncation units by more than
1 / (N d) (1.5 for N = 65; a floor of 1e-3 let them move attention outputs by 5e-2).
The shipped MPCViT fine-tune keeps its accuracy with this floor.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .fixed_point import cat
from .periodic import MAX_HARMONICS, FourierSeries, fit_series
from .range_guess import geometric_pieces, piecewise_constant
from .registry import Protocol, register

__all__ = ["EXACT_SPREAD", "exp_series", "reciprocal_series", "relu_series", "softmax_exact_reference",
           "softmax_exact_secure"]

RECIPROCAL_NR_STEPS = 5
RECIPROCAL_TOL = 1e-5
R_MIN, R_MAX = 0.01, 600.0  # the range of r the reciprocal covers
RECIPROCAL_KNOTS, _R_MIDDLES = geometric_pieces(R_MIN, R_MAX)
_RECIPROCAL_LEVELS = (0.8 / _R_MIDDLES).unsqueeze(0)  # y0 r in [0.4, 1.6] on pieces of ratio 4
QUAD_RECIPROCAL_SCALE = 1.0 / 8.0  # public: the 2Quad reciprocal runs on mean / 8
RELU_RECIPROCAL_SCALE = 10.0  # and the ReLU forms' on 10 mean
RELU_MEAN_FLOOR = 1e-2
QUAD_SHIFT = 5.0
EXACT_SPREAD = 96.0  # softmax.exact: the largest row spread max s - min s
_WIDE_BITS = 26  # coefficient and mask bits of the shift's ReLU (values up to 2^7)
_NARROW_BITS = 28  # and of exp and the reciprocal (values below 4)


@functools.lru_cache(maxsize=None)
def relu_series() -> FourierSeries:
    """ReLU(d) = d / 2 + |d| / 2 on |d| <= 96, |d| / 2 by 32 odd cosine harmonics of period 256."""
    return fit_series(lambda d: np.abs(d) / 2, -EXACT_SPREAD, EXACT_SPREAD, 8, 32, step=2, terms=("cos",),
                      linear=0.5, coeff_bits=_WIDE_BITS, mask_bits=_WIDE_BITS)


@functools.lru_cache(maxsize=None)
def exp_series() -> FourierSeries:
    """exp(x) on [-98, 1.5] by 48 harmonics of period 128."""
    return fit_series(np.exp, -EXACT_SPREAD - 2, 1.5, 7, 48, ridge=1e-6, coeff_bits=_NARROW_BITS,
                      mask_bits=_NARROW_BITS)


@functools.lru_cache(maxsize=None)
def reciprocal_series(n: int) -> tuple[FourierSeries, int]:
    """1 / S on [0.3, 3 n] (the row sums of ``n`` exponentials shifted by m), fitted for
    relative error by P harmonics of period P = 2^ceil(log2 3.75 n) (at most 1,024), and
    the Newton-Raphson steps that take its relative error below 1e-5."""
    period_bits = max(3, math.ceil(math.log2(3.75 * n)))
    hi = 3.0 * n
    series = fit_series(lambda v: 1 / v, 0.3, hi, period_bits, min(2**period_bits, MAX_HARMONICS),
                        weight=lambda v: v, ridge=1e-4, coeff_bits=_NARROW_BITS, mask_bits=_NARROW_BITS)
    v = torch.linspace(0.3, hi, 20001, dtype=torch.float64)
    error = float(((series.reference(v) - 1 / v) * v).abs().max())
    return series, max(1, math.ceil(math.log2(math.log(RECIPROCAL_TOL) / math.log(error))))


def _max_tree(s):
    """A shift within 1 of the row maximum, over the last dim by halving: m = b + ReLU(a - b)."""
    while s.size(-1) > 1:
        k = s.size(-1) // 2
        a, b, rest = s[..., :k], s[..., k : 2 * k], s[..., 2 * k :]
        m = b + (a - b).fourier(relu_series())
        s = cat([m, rest], -1) if rest.size(-1) else m
    return s


# ---- softmax.exact ----------------------------------------------------------------


def softmax_exact_secure(s):
    """Softmax of a CrypTensor over its last dim (every row in one batched op)."""
    n = s.size(-1)
    numerator = (s - _max_tree(s)).fourier(exp_series())
    total = numerator.sum(-1, keepdim=True)
    series, steps = reciprocal_series(n)
    y = total.fourier(series)
    for _ in range(steps - 1):
        y = y * (2.0 - total * y)
    both = cat([numerator, total], -1) * y  # numerator y and S y: one product
    return both[..., :n] * (2.0 - both[..., n:])


def softmax_exact_reference(s: torch.Tensor) -> torch.Tensor:
    """Plaintext softmax over the last dim."""
    return torch.softmax(s, -1)


# ---- normalised replacements -----------------------------------------------------------


def _reciprocal_secure(r):
    y = piecewise_constant(r, RECIPROCAL_KNOTS, _RECIPROCAL_LEVELS)[0]
    for _ in range(RECIPROCAL_NR_STEPS):
        y = y * (2.0 - r * y)
    return y


def _normalise_secure(q, scale: float, floor: float = 0.0, shift_numerator: bool = False):
    """q / (sum q + N floor), or (q + floor) / (sum q + N floor), through the row mean
    m = mean q + floor so that the reciprocal of ``scale`` m stays in its range."""
    n = q.size(-1)
    mean = q.mean(-1, keepdim=True) + floor
    numerator = q + floor if shift_numerator else q
    return numerator * _reciprocal_secure(mean * scale) * (scale / n)


def _normalise_reference(q: torch.Tensor, floor: float = 0.0, shift_numerator: bool = False):
    numerator = q + floor if shift_numerator else q
    return numerator / (q.sum(-1, keepdim=True) + q.shape[-1] * floor)


def _relu_secure(s):
    return _normalise_secure(s.relu(), RELU_RECIPROCAL_SCALE, RELU_MEAN_FLOOR)


def _relu_reference(s: torch.Tensor) -> torch.Tensor:
    return _normalise_reference(torch.relu(s), RELU_MEAN_FLOOR)


def _two_relu_secure(s):
    return _normalise_secure(s.relu(), RELU_RECIPROCAL_SCALE, RELU_MEAN_FLOOR, shift_numerator=True)


def _two_relu_reference(s: torch.Tensor) -> torch.Tensor:
    return _normalise_reference(torch.relu(s), RELU_MEAN_FLOOR, shift_numerator=True)


def _quad_secure(s):
    return _normalise_secure((s + QUAD_SHIFT).square(), QUAD_RECIPROCAL_SCALE)


def _quad_reference(s: torch.Tensor) -> torch.Tensor:
    return _normalise_reference((s + QUAD_SHIFT) ** 2)


def _scaling_secure(s):
    """s / N: one exact truncation by the integer N (none inside an attention, which folds
    it into its logits' truncation: :attr:`~protocols.registry.Protocol.divisor`)."""
    return s.div(s.size(-1))


def _scaling_reference(s: torch.Tensor) -> torch.Tensor:
    return s / s.shape[-1]


register(Protocol(
    name="softmax.exact", kind="softmax", secure=softmax_exact_secure, reference=softmax_exact_reference,
    formula="exp(s - m) / sum exp(s - m), m ~ max s; ReLU, exp, 1/S by Fourier series",
    paper="SHAFT (Kei and Chow, NDSS 2025)", valid_range=(-8.0, 8.0), tolerance=1e-3,
))
register(Protocol(
    name="softmax.relu", kind="softmax", secure=_relu_secure, reference=_relu_reference,
    formula="ReLU(s) / (sum ReLU(s) + N 1e-2)", paper="MPCViT RSAttn (Zeng et al., ICCV 2023)",
    valid_range=(-1.0, 8.0), tolerance=2e-3,
))
register(Protocol(
    name="softmax.2relu", kind="softmax", secure=_two_relu_secure, reference=_two_relu_reference,
    formula="(ReLU(s) + 1e-2) / (sum ReLU(s) + N 1e-2)", paper="MPCFormer (Li et al., ICLR 2023)", valid_range=(-1.0, 8.0), tolerance=2e-3,
))
register(Protocol(
    name="softmax.2quad", kind="softmax", secure=_quad_secure, reference=_quad_reference,
    formula="(s + 5)^2 / sum (s + 5)^2", paper="MPCFormer (Li et al., ICLR 2023)", valid_range=(-8.0, 8.0),
    tolerance=2e-3,
))
register(Protocol(
    name="softmax.scaling", kind="softmax", secure=_scaling_secure, reference=_scaling_reference, formula="s / N",
    paper="MPCViT ScaleAttn (Zeng et al., ICCV 2023)", valid_range=(-8.0, 8.0), tolerance=1e-4, divisor=lambda n: n,
))
