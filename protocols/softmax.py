"""Softmax kernels.

``softmax_exact``: exp(s - max s) / sum exp(s - max s) (Knott et al., "CrypTen", NeurIPS
2021, for max and exp): the row maximum by CrypTen's tree of comparisons
(ceil(log2 N) comparison layers) and exp(x) = (1 + x/2^8)^(2^8) (8 squarings).

The reciprocal of the row sum S is ours. Subtracting the maximum pins S to [1, N]
(the maximum contributes exp(0) = 1, each of the N terms at most 1), and N is public.
Newton-Raphson y <- y (2 - S y) (2 rounds a step) then starts from the linear guess
y0 = b (1 + N - S) with b = 2 / (N + (1 + N)^2 / 4), the equioscillating best linear
approximation of 1/S on [1, N]: its relative error e0 = 1 - b N is known, and
ceil(log2(log(tol) / log(e0))) steps reach ``tol`` (7 steps, 14 rounds, for N = 65).
CrypTen's reciprocal instead spends 8 rounds on an exp-based guess plus 10 steps:
28 rounds. Valid range: any logits whose row spread is below 2^8 (exp stays in range).
"""

from __future__ import annotations

import math

import torch

from .backend import cfg

__all__ = ["reciprocal_steps", "softmax_exact_reference", "softmax_exact_secure"]

RECIPROCAL_TOL = 1e-5


def reciprocal_steps(n: int, tol: float = RECIPROCAL_TOL) -> int:
    """Newton-Raphson steps that take the linear guess on [1, n] to relative error ``tol``."""
    if n <= 1:
        return 1
    e0 = 1.0 - 2.0 * n / (n + (1 + n) ** 2 / 4)
    return max(1, math.ceil(math.log2(math.log(tol) / math.log(e0))))


def _reciprocal_1_to_n(total, n: int):
    b = 2.0 / (n + (1 + n) ** 2 / 4)
    y = (total * -b) + b * (1 + n)
    for _ in range(reciprocal_steps(n)):
        y = y * (2.0 - total * y)
    return y


def softmax_exact_secure(s, dim: int = -1, exp_iters: int = 8):
    """Softmax of a CrypTensor along ``dim`` (every row in one batched op)."""
    n = s.size(dim)
    if n == 1:
        return s * 0.0 + 1.0
    with cfg.temp_override({"functions.exp_iterations": exp_iters}):
        numerator = (s - s.max(dim, keepdim=True)[0]).exp()
    return numerator * _reciprocal_1_to_n(numerator.sum(dim, keepdim=True), n)


def softmax_exact_reference(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Plaintext softmax."""
    return torch.softmax(s, dim)
