"""GELU kernels and their MPC-friendly replacements; SiLU and Hardswish (timm's EVA-02 and
LeViT) exactly (``silu.exact``, ``hardswish.exact``: their functions below).

``gelu.quad`` (MPCFormer, Li et al., ICLR 2023): 0.125 x^2 + 0.25 x + 0.5 (needs
distillation), computed as (x + 1)^2 / 8 + 0.375: one square whose truncation also
divides by 8 (2 rounds; as written, 4: the square, its truncation and one truncation per
public coefficient); ``gelu.relu``: max(x, 0); ``gelu.identity`` (MPCViT+): x.

``gelu.poly`` (after PUMA, Dong et al., 2023; coefficients fitted here by least squares,
:func:`poly_pieces`): 0 for x < -4, a cubic on [-4, -1.95), a degree-6 polynomial on
[-1.95, 3], x beyond 3, both polynomials in w = x / 4. One batched comparison of x
against the three knots (8 rounds), the powers w..w^6 (3 rounds), one batched product
of the three bits with the piece differences: 12 rounds. Valid for |x| <= 22.

``gelu_erf``: GELU(x) = x * (1 + erf(x / sqrt(2))) / 2, erf by its Maclaurin series as in
CrypTen's ``erf`` (Knott et al., "CrypTen: Secure Multi-Party Computation Meets Machine
Learning", NeurIPS 2021), truncated after ``terms`` odd powers:

    erf(z) ~ z * sum_{n=0..terms} c_n t^n,  t = z^2,  c_n = 2/sqrt(pi) (-1)^n / (n! (2n+1))

Secure evaluation (ours): t = z^2 (1 round), u = t / s with s = z_max^2 so that u is in
[0, 1] (public, local), u, u^2, ..., u^terms by an exponentially growing tree of products
(ceil(log2 terms) rounds), sum of (c_n s^n) u^n with public, well-scaled coefficients
(local), then z * series and x * (1 + erf): 3 + ceil(log2 terms) rounds (6 for 8 terms)
against 34 for CrypTen's ``erf``, which raises every power separately and multiplies
them by coefficients as small as 1e-6 that 16-bit fixed point rounds to zero.

Valid range: |x| <= 2.5 for 8 terms (GELU error < 8e-3); the series diverges beyond
(70 at x = 4), and trained ViTs feed GELU values up to 8 and more. Kept as the
paper baseline ("gelu.erf"); exact GELU ("gelu.exact", reference ``F.gelu``) runs
``gelu_fourier`` under MPC.

``gelu_fourier`` (after SHAFT, Kei and Chow, NDSS 2025): GELU(x) = x Phi(x) with
Phi(x) = 1/2 + sum_k b_k sin(2 pi k x / 64) over the odd harmonics k = 1, 3, ..., 39
(:func:`gelu_series`, least squares weighted by |x| on [-26, 26]): Phi - 1/2 is odd and
saturates by |x| = 5, so its odd extension symmetric about 16 (what odd sine harmonics of
period 64 describe) follows it up to |x| = 27. Evaluated with the dealer's trigonometric
masks (:mod:`protocols.periodic`): one opening of the masked input, the product by x
local, one exact truncation: 2 rounds and 32 bytes per element, where ReLU minus a
Gaussian tail took 30 rounds and 1,232 bytes. Error: the fit's 4e-5 plus the
encodings' (20 harmonics at 2^-22 and 2^-18: below 1e-4 |x|) and the truncation's unit.
Valid range: |x| <= 26 (beyond, the series wraps with its period).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .fixed_point import cat, stack
from .periodic import FourierSeries, fit_series
from .registry import Protocol, register

__all__ = [
    "ERF_TERMS",
    "GELU_RANGE",
    "erf_series_coefficients",
    "gelu_erf_reference",
    "gelu_erf_secure",
    "gelu_fourier_reference",
    "gelu_fourier_secure",
    "gelu_series",
    "hardswish_secure",
    "poly_pieces",
    "silu_series",
]

ERF_TERMS = 8
ERF_RANGE = 1.77  # |z| = |x| / sqrt(2) up to which the 8-term series holds
GELU_PERIOD_BITS = 6  # period 64
GELU_HARMONICS = 20
GELU_RANGE = 26.0
SILU_PERIOD_BITS = 7  # period 128
SILU_HARMONICS = 32
SILU_RANGE = 48.0
_SQRT2 = math.sqrt(2.0)


def erf_series_coefficients(terms: int = ERF_TERMS) -> list[float]:
    """c_0..c_terms of erf(z) = z * sum_n c_n z^(2n)."""
    scale = 2.0 / math.sqrt(math.pi)
    return [scale * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(terms + 1)]


def _powers(u, terms: int):
    """Stack [u, u^2, ..., u^terms] along a new dim 0 in ceil(log2 terms) rounds."""
    powers = u.unsqueeze(0)
    while powers.size(0) < terms:
        need = min(powers.size(0), terms - powers.size(0))
        powers = cat([powers, powers[:need] * powers[powers.size(0) - 1]])
    return powers


def _coeff_column(coeffs: list[float] | tuple[float, ...], dims: int) -> torch.Tensor:
    return torch.tensor(coeffs[1:], dtype=torch.float32).view((len(coeffs) - 1,) + (1,) * (dims - 1))


def _poly(powers, coeffs: list[float] | tuple[float, ...]):
    """sum_n coeffs[n] * w^n given the stacked powers [w, ..., w^k] (local)."""
    return (powers * _coeff_column(coeffs, powers.dim())).sum(0) + coeffs[0]


def gelu_erf_secure(x, terms: int = ERF_TERMS):
    """GELU of a CrypTensor by the 8-term erf series (valid for |x| <= 2.5)."""
    z = x * (1.0 / _SQRT2)
    s = ERF_RANGE**2
    u = z.square() * (1.0 / s)
    coeffs = [c * s**n for n, c in enumerate(erf_series_coefficients(terms))]
    return x * (z * _poly(_powers(u, terms), coeffs) + 1.0) * 0.5


def gelu_erf_reference(x: torch.Tensor, terms: int | None = None) -> torch.Tensor:
    """Plaintext GELU: exact when ``terms`` is None, else the truncated erf series."""
    if terms is None:
        return torch.nn.functional.gelu(x)
    z = x / _SQRT2
    series = sum(c * (z * z) ** n for n, c in enumerate(erf_series_coefficients(terms)))
    return x * (1 + z * series) / 2


@functools.lru_cache(maxsize=None)
def gelu_series() -> FourierSeries:
    """Phi(x) as odd sine harmonics 1..39 of period 64, fitted on [-26, 26]; the kernel
    multiplies by x (see the module docstring)."""
    ndtr = lambda v: torch.special.ndtr(torch.from_numpy(v)).numpy()  # noqa: E731
    return fit_series(ndtr, -GELU_RANGE, GELU_RANGE, GELU_PERIOD_BITS, GELU_HARMONICS, step=2, terms=("sin",),
                      constant=0.5, times_x=True, weight=lambda v: np.maximum(np.abs(v), 0.5))


def gelu_fourier_secure(x):
    """GELU of a CrypTensor as x Phi(x), Phi by its Fourier series (see the module docstring)."""
    return x.fourier(gelu_series())


@functools.lru_cache(maxsize=None)
def silu_series() -> FourierSeries:
    """sigma(x) as odd sine harmonics 1..63 of period 128, fitted on [-48, 48]; the kernel
    multiplies by x (``silu.exact``: GELU's construction, the logistic saturating more slowly)."""
    return fit_series(lambda v: 1 / (1 + np.exp(-v)), -SILU_RANGE, SILU_RANGE, SILU_PERIOD_BITS, SILU_HARMONICS,
                      step=2, terms=("sin",), constant=0.5, times_x=True, weight=lambda v: np.maximum(np.abs(v), 0.5))


def hardswish_secure(x):
    """Hardswish x relu6(x + 3) / 6 of a secret: b_lo = [x >= -3] and b_hi = [x >= 3] from one
    opening (the dealer's key evaluated at both knots), q = x (x + 3) / 6 =
    (x + 3/2)^2 / 6 - 3/8 (one square, its truncation dividing by 6), then
    (b_lo - b_hi) q + b_hi x in one product of the integral bits (no truncation): 4 rounds."""
    lo, hi = x.at_least((-3.0, 3.0)).unbind(0)
    q = (x + 1.5).square_div(6) - 0.375
    return (stack([lo - hi, hi]) * stack([q, x])).sum(0)


def gelu_fourier_reference(x: torch.Tensor) -> torch.Tensor:
    """Plaintext twin of :func:`gelu_fourier_secure`: x times the fitted series."""
    return gelu_series().reference(x).to(x.dtype)


# ---- gelu.poly ------------------------------------------------------------------------

POLY_KNOTS = (-4.0, -1.95, 3.0)
POLY_SCALE = 4.0


@functools.lru_cache(maxsize=None)
def poly_pieces() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Least-squares coefficients (in w = x / 4) of the cubic and the degree-6 piece."""
    gelu = lambda v: v * (1 + np.vectorize(math.erf)(v / _SQRT2)) / 2  # noqa: E731

    def fit(lo: float, hi: float, degree: int) -> tuple[float, ...]:
        x = np.linspace(lo, hi, 2001)
        coeffs, *_ = np.linalg.lstsq(np.vander(x / POLY_SCALE, degree + 1, increasing=True), gelu(x), rcond=None)
        return tuple(float(c) for c in coeffs)

    return fit(POLY_KNOTS[0], POLY_KNOTS[1], 3), fit(POLY_KNOTS[1], POLY_KNOTS[2], 6)


def _poly_pieces_padded() -> tuple[tuple[float, ...], tuple[float, ...]]:
    cubic, sextic = poly_pieces()
    return cubic + (0.0,) * 3, sextic


def gelu_poly_secure(x):
    """Piecewise-polynomial GELU of a CrypTensor (see the module docstring)."""
    bits = stack([x - k for k in POLY_KNOTS]).ge(0)
    powers = _powers(x * (1.0 / POLY_SCALE), 6)
    cubic, sextic = (_poly(powers, c) for c in _poly_pieces_padded())
    pieces = stack([cubic, sextic - cubic, x - sextic])
    return (bits * pieces).sum(0)


def gelu_poly_reference(x: torch.Tensor) -> torch.Tensor:
    w = x / POLY_SCALE
    cubic, sextic = (sum(c * w**n for n, c in enumerate(cs)) for cs in poly_pieces())
    lo, mid, hi = POLY_KNOTS
    return torch.where(x < lo, 0.0, torch.where(x < mid, cubic, torch.where(x <= hi, sextic, x)))


# ---- registry ---------------------------------------------------------------------------


def _quad(x):
    """0.125 x^2 + 0.25 x + 0.5 = (x + 1)^2 / 8 + 0.375: one opening, one truncation."""
    return (x + 1.0).square_div(8) + 0.375


register(Protocol(
    name="gelu.erf", kind="activation", secure=gelu_erf_secure,
    reference=lambda x: gelu_erf_reference(x, ERF_TERMS),
    formula="x (1 + erf(x / sqrt 2)) / 2, erf by 8 Maclaurin terms", paper="CrypTen (Knott et al., NeurIPS 2021)",
    valid_range=(-2.5, 2.5), tolerance=1e-3,
))
register(Protocol(
    name="gelu.exact", kind="activation", secure=gelu_fourier_secure, reference=torch.nn.functional.gelu,
    formula="x Phi(x); secure: Phi by 20 odd sine harmonics of period 64, trigonometric masks",
    paper="SHAFT (Kei and Chow, NDSS 2025)", valid_range=(-GELU_RANGE, GELU_RANGE), tolerance=1e-3,
))
register(Protocol(
    name="silu.exact", kind="activation", secure=lambda x: x.fourier(silu_series()),
    reference=torch.nn.functional.silu,
    formula="x sigma(x); secure: sigma by 32 odd sine harmonics of period 128, trigonometric masks",
    paper="SiLU (Elfwing et al., 2018) by SHAFT's construction (Kei and Chow, NDSS 2025)",
    valid_range=(-SILU_RANGE, SILU_RANGE), tolerance=1e-3,
))
register(Protocol(
    name="hardswish.exact", kind="activation", secure=hardswish_secure, reference=torch.nn.functional.hardswish,
    formula="x relu6(x + 3) / 6; secure: one comparison with both knots, a square, a product by the bits",
    paper="Hardswish (Howard et al., MobileNetV3, ICCV 2019)", valid_range=(-22.0, 22.0), tolerance=1e-3,
))
register(Protocol(
    name="gelu.poly", kind="activation", secure=gelu_poly_secure, reference=gelu_poly_reference,
    formula="0 | cubic | degree 6 | x, knots -4, -1.95, 3", paper="PUMA (Dong et al., 2023)",
    valid_range=(-22.0, 22.0), tolerance=2e-3,
))
register(Protocol(
    name="gelu.quad", kind="activation", secure=_quad, reference=lambda x: 0.125 * x**2 + 0.25 * x + 0.5,
    formula="0.125 x^2 + 0.25 x + 0.5", paper="MPCFormer (Li et al., ICLR 2023)", valid_range=(-8.0, 8.0),
    tolerance=1e-3,
))
register(Protocol(
    name="gelu.relu", kind="activation", secure=lambda x: x.relu(), reference=torch.relu, formula="max(x, 0)",
    paper="common practice", valid_range=(-22.0, 22.0), tolerance=1e-4,
))
register(Protocol(
    name="gelu.identity", kind="activation", secure=lambda x: x, reference=lambda x: x, formula="x",
    paper="MPCViT+ (Zeng et al., ICCV 2023)", valid_range=(-22.0, 22.0), tolerance=1e-4,
))
