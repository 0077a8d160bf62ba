"""LayerNorm kernel (CrypTen has none).

``layer_norm``: (x - mu) * (var + eps)^(-1/2) * gamma + beta over the last dimension
(Ba et al., "Layer Normalization", 2016). mu and var are local sums with public scaling
plus one squaring; the inverse square root is CrypTen's: initial guess
y0 = 2.2 exp(-(v/2 + 0.2)) + 0.2 - v/1024 (8 squarings), then ``nr_iters`` Newton-Raphson
steps y <- y (3 - v y^2) / 2 (3 products each, on one value per row: rounds, not bytes).

That iteration is accurate (relative error < 2e-3) for v in [0.126, 126] after 3 steps
and [0.0126, 316] after 6. Trained ViTs span more: the shipped ViT-Lite sees row
variances from 9e-4 (the CLS row entering block 0) to 16. LayerNorm is invariant to a
public rescaling of its input (with eps rescaled too), so v is evaluated as
``var_scale`` * (var + eps): the defaults (16, 6 steps) cover [7.9e-4, 19.8].
Rounds: 1 (square) + 8 (exp) + 3 * nr_iters + 1 (normalise) + 1 with a secret gamma.
"""

from __future__ import annotations

import torch

from .backend import cfg

__all__ = ["LN_NR_ITERS", "LN_VAR_SCALE", "layer_norm_reference", "layer_norm_secure"]

LN_NR_ITERS = 6
LN_VAR_SCALE = 16.0


def layer_norm_secure(
    x, weight=None, bias=None, eps: float = 1e-5, nr_iters: int = LN_NR_ITERS, var_scale: float = LN_VAR_SCALE
):
    """LayerNorm of a CrypTensor over its last dimension; ``weight``/``bias`` may be secret."""
    centered = x - x.mean(-1, keepdim=True)
    var = centered.square().mean(-1, keepdim=True)
    with cfg.temp_override({"functions.sqrt_nr_iters": nr_iters}):
        inv_std = ((var + eps) * var_scale).inv_sqrt() * var_scale**0.5
    y = centered * inv_std
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def layer_norm_reference(x: torch.Tensor, weight=None, bias=None, eps: float = 1e-5) -> torch.Tensor:
    """Plaintext LayerNorm over the last dimension."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)
