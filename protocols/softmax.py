"""Softmax kernels.

``softmax_exact``: exp(s - max s) / sum exp(s - max s) as CrypTen computes it (Knott et
al., NeurIPS 2021): the row maximum by a tree of comparisons (ceil(log2 N) comparison
layers), exp(x) = (1 + x/2^8)^(2^8) (8 squarings), and the reciprocal of the row sum by
Newton-Raphson from an exp-based initial guess (``reciprocal_iters`` steps, 2 products
each). Valid range: any s with max - min < 2^8 (the exp limit ``(1 + x/256)`` stays > 0).
"""

from __future__ import annotations

import torch

from .backend import cfg

__all__ = ["softmax_exact_secure", "softmax_exact_reference"]


def softmax_exact_secure(s, dim: int = -1, reciprocal_iters: int = 10, exp_iters: int = 8):
    """Softmax of a CrypTensor along ``dim`` (every row in one batched op)."""
    overrides = {"functions.reciprocal_nr_iters": reciprocal_iters, "functions.exp_iterations": exp_iters}
    with cfg.temp_override(overrides):
        return s.softmax(dim)


def softmax_exact_reference(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Plaintext softmax."""
    return torch.softmax(s, dim)
