"""Softmax kernels and their MPC-friendly replacements (rows of S = Q K^T / sqrt(d)).

``softmax.exact`` (CrypTen, Knott et al., NeurIPS 2021, for max and exp):
exp(s - max s) / sum exp(s - max s). The row maximum by a tree of ReLUs,
m = b + ReLU(a - b) over halves (ceil(log2 N) comparison layers; CrypTen's ``max``
also builds a one-hot argmax that softmax never uses). exp(x) for x = s - max s <= 0 by
(1 + z + z^2/2)^(2^7), z = x / 2^7: the second-order Taylor base instead of CrypTen's
(1 + x/2^8)^(2^8), whose relative error x^2 / 2^9 (5% at x = -5) dominated the exact
checkpoint's logit error (0.054 over 2,000 images under MPC; 0.0066 with this base, one
round more: z^2 and its halving cost 3 rounds, one squaring fewer saves 2). Relative error
|x|^3 / (6 4^7) + 2^7 ulp; valid for x >= -242 (the base stays below 0.9 for
z >= -1.89; the shipped checkpoints' rows reach -73).
The row sum S is pinned to [1, N] by the max subtraction (the max contributes exactly
1) and N is public, so its reciprocal starts from the equioscillating best linear guess
on [1, N], y0 = b (1 + N - S), b = 2 / (N + (1 + N)^2 / 4), whose relative error
e0 = 1 - b N is known: ceil(log2(log(1e-5) / log e0)) Newton-Raphson steps
y <- y (2 - S y) (7 for N = 65, 2 rounds each) instead of an exp guess and 10 steps.

``softmax.relu`` (MPCViT's RSAttn, Zeng et al., ICCV 2023): ReLU(s) / (sum ReLU(s) + N d).
``softmax.2relu`` (MPCFormer, Li et al., ICLR 2023): (ReLU(s) + d) / (sum ReLU(s) + N d).
``softmax.2quad`` (MPCFormer): (s + c)^2 / sum (s + c)^2, c = 5.
``softmax.scaling`` (MPCViT's ScaleAttn): s / N: one truncation by N, folded into the
logits' own truncation inside an attention (no round of its own).

The three normalised replacements divide by the row mean m = sum / N with a reciprocal
of r = k m for r in [0.01, 600]: the guess y0 = 0.8 / (geometric middle of r's piece),
the range cut into pieces of ratio 4 (:mod:`protocols.range_guess`: one batched
comparison, 8 rounds), puts r y0 in [0.4, 1.6]; then 5 Newton-Raphson steps
y <- y (2 - r y) reach relative error 1e-7 (2 rounds each: 18 in all, where CrypTen's
exponential guess and 10 steps took 28). 2Quad takes k = 1/8 (row means in
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

import math

import torch

from .fixed_point import cat
from .range_guess import geometric_pieces, piecewise_constant
from .registry import Protocol, register

__all__ = ["reciprocal_steps", "softmax_exact_reference", "softmax_exact_secure"]

RECIPROCAL_TOL = 1e-5
RECIPROCAL_NR_STEPS = 5
R_MIN, R_MAX = 0.01, 600.0  # the range of r the reciprocal covers
RECIPROCAL_KNOTS, _R_MIDDLES = geometric_pieces(R_MIN, R_MAX)
_RECIPROCAL_LEVELS = (0.8 / _R_MIDDLES).unsqueeze(0)  # y0 r in [0.4, 1.6] on pieces of ratio 4
QUAD_RECIPROCAL_SCALE = 1.0 / 8.0  # public: the 2Quad reciprocal runs on mean / 8
RELU_RECIPROCAL_SCALE = 10.0  # and the ReLU forms' on 10 mean
RELU_MEAN_FLOOR = 1e-2
QUAD_SHIFT = 5.0
EXP_SQUARINGS = 7  # softmax.exact's exp: (1 + z + z^2/2)^(2^7), z = x / 2^7


def reciprocal_steps(n: int, tol: float = RECIPROCAL_TOL) -> int:
    """Newton-Raphson steps that take the linear guess on [1, n] to relative error ``tol``."""
    if n <= 1:
        return 1
    e0 = 1.0 - 2.0 * n / (n + (1 + n) ** 2 / 4)
    return max(1, math.ceil(math.log2(math.log(tol) / math.log(e0))))


def _linear_guess(n: int) -> tuple[float, float]:
    b = 2.0 / (n + (1 + n) ** 2 / 4)
    return -b, b * (1 + n)


def _max_tree(s):
    """Row maximum over the last dim by halving: m = b + ReLU(a - b)."""
    while s.size(-1) > 1:
        k = s.size(-1) // 2
        a, b, rest = s[..., :k], s[..., k : 2 * k], s[..., 2 * k :]
        m = b + (a - b).relu()
        s = cat([m, rest], -1) if rest.size(-1) else m
    return s


# ---- softmax.exact ----------------------------------------------------------------


def softmax_exact_secure(s):
    """Softmax of a CrypTensor over its last dim (every row in one batched op)."""
    n = s.size(-1)
    numerator = _exp_taylor_secure(s - _max_tree(s))
    total = numerator.sum(-1, keepdim=True)
    slope, intercept = _linear_guess(n)
    y = total * slope + intercept
    for _ in range(reciprocal_steps(n)):
        y = y * (2.0 - total * y)
    return numerator * y


def _exp_taylor_secure(x):
    """exp(x), x <= 0 (see the module docstring): (1 + z + z^2/2)^(2^m), z = x / 2^m."""
    z = x.div(2**EXP_SQUARINGS)
    y = z + z.square().div(2) + 1.0
    for _ in range(EXP_SQUARINGS):
        y = y.square()
    return y


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
    formula="exp(s - max s) / sum exp(s - max s)", paper="CrypTen (Knott et al., NeurIPS 2021)", valid_range=(-8.0, 8.0), tolerance=1e-3,
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
