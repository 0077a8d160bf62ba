"""The quantizers of post-training quantization (fake quantization: quantize, then
dequantize, in float), with their calibration.

- Uniform (min-max): ``s = (max - min) / (2^b - 1)``, ``z = round(-min / s)``,
  ``x^ = (clamp(round(x / s) + z, 0, 2^b - 1) - z) s``; per tensor or per channel.
- log-sqrt2 (RepQ-ViT, Li et al., ICCV 2023), for post-softmax values in [0, 1]:
  ``q = clamp(round(-2 log2 x), 0, 2^b - 1)``, ``x^ = 2^(-q / 2)``, equal to its base-2
  reparameterization ``2^(-ceil(q / 2)) (1 + (q mod 2)(sqrt 2 - 1))``.
- shift-uniform-log2 (I&S-ViT, Zhong et al., 2023), for post-softmax values:
  ``q = clamp(round(-log2(x + eta) / s), 0, 2^b - 1)``, ``x^ = 2^(-s q) - eta``, with
  ``eta`` and ``s`` chosen on calibration data (grid search of the squared error).

Rounding passes gradients straight through (``ste_round``), so I&S-ViT's smooth
optimization can tune weights and scales through the quantizers.
"""

from __future__ import annotations

import math

import torch

__all__ = ["fit_shift_uniform_log2", "log2_sqrt2_reparameterized", "log_sqrt2", "shift_uniform_log2", "ste_round",
           "uniform", "uniform_params"]


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward (straight-through estimator)."""
    return x + (x.round() - x).detach()


def uniform_params(low: torch.Tensor, high: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max scale and zero point covering ``[low, high]`` (0 always included)."""
    low, high = low.clamp(max=0.0), high.clamp(min=0.0)
    scale = ((high - low) / (2**bits - 1)).clamp(min=1e-8)
    return scale, (-low / scale).round()


def uniform(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform fake quantization with ``scale`` and ``zero`` (broadcast against ``x``)."""
    q = (ste_round(x / scale) + zero).clamp(0, 2**bits - 1)
    return (q - zero) * scale


def log_sqrt2(x: torch.Tensor, bits: int) -> torch.Tensor:
    """RepQ-ViT's log-sqrt2 fake quantization of values in [0, 1]."""
    q = ste_round(-2 * torch.log2(x.clamp(min=1e-30))).clamp(0, 2**bits - 1)
    return torch.exp2(-q / 2)


def log2_sqrt2_reparameterized(q: torch.Tensor) -> torch.Tensor:
    """The log-sqrt2 level of integer codes ``q`` in base 2: a power of two and one public
    correction, ``2^(-ceil(q / 2)) (1 + (q mod 2)(sqrt 2 - 1))``."""
    return torch.exp2(-torch.ceil(q / 2)) * (1 + (q % 2) * (math.sqrt(2) - 1))


def shift_uniform_log2(x: torch.Tensor, bits: int, eta: float, scale: float) -> torch.Tensor:
    """I&S-ViT's shift-uniform-log2 fake quantization of values in [0, 1]."""
    q = ste_round(-torch.log2(x + eta) / scale).clamp(0, 2**bits - 1)
    return torch.exp2(-scale * q) - eta


def fit_shift_uniform_log2(x: torch.Tensor, bits: int) -> tuple[float, float]:
    """``(eta, scale)`` of :func:`shift_uniform_log2` with the least squared error on
    calibration values ``x`` (a grid: eta from 2^-20 to 2^-2, the scale spreading the
    levels over [0, -log2 eta])."""
    best = (math.inf, 0.0, 0.0)
    sample = x.flatten()[:: max(1, x.numel() // 200_000)]
    for e in range(2, 21):
        eta = 2.0**-e
        for spread in (0.5, 0.75, 1.0, 1.25):
            scale = spread * -math.log2(eta) / (2**bits - 1)
            error = float((shift_uniform_log2(sample, bits, eta, scale) - sample).pow(2).mean())
            if error < best[0]:
                best = (error, eta, scale)
    return best[1], best[2]
