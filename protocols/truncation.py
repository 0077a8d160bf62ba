"""Truncation of a fixed-point product: exact with a dealer's truncation pair, or local.

After a product of two values at ``f`` fractional bits, the shared integer ``x = v 2^(2f)``
must be divided by ``d = 2^f`` (and a mean divides by its element count). CrypTen's
two-party truncation divides each share locally; that is off by one unit unless the
shares wrap around the ring, which happens with probability ``|x| / 2^64`` per element
(``|v| / 2^32`` at 16 bits) and then leaves garbage of size ``2^(64-f)``.

**Exact truncation** (the default) uses a *truncation pair* from the dealer (after
Dalskov, Escudero and Keller, "Secure Evaluation of Quantized Neural Networks", PoPETs
2020, and Escudero et al., "Improved Primitives for MPC over Mixed Arithmetic-Binary
Circuits", CRYPTO 2020, adapted to a known top bit): shares of a uniform ``r`` of
Z_{2^64}, of ``q = floor(r_u / d)`` and of ``t = msb(r) floor(2^64 / d)``.

1. Each party adds its share of ``r`` (party 0 also adds ``2^62``) and the sum
   ``c = x + 2^62 + r mod 2^64`` is opened: one round, ``c`` is uniform, so it reveals
   nothing.
2. With ``x' = x + 2^62`` in ``[0, 2^63)``, the sum wraps exactly when ``msb(r) = 1`` and
   ``msb(c) = 0``, so ``x' = c_u - r_u + msb(r) (1 - msb(c)) 2^64``: a linear function of
   the shared ``r``-values, ``c`` and the public bit ``msb(c)``.
3. ``x / d = floor(c_u / d) - q + (1 - msb(c)) t - floor(2^62 / d)``, computed locally.

Valid range: ``|x| < 2^62`` (``|v| < 2^(62 - 2f)``, i.e. 2^30 at 16 bits); inside it the
result never fails and is within one unit of ``x / d`` for ``d = 2^f`` (rounded up or
down with probability by the remainder: unbiased), within two units for other ``d``.
Cost: one round, 8 bytes per element sent per party, three ring elements of
preprocessing per element (two of them corrections sent by the dealer).

:func:`local_failure_rate` is the other mode's per-element failure probability.
"""

from __future__ import annotations

from typing import Any

import torch

from .preprocessing import udiv

__all__ = ["MAX_PRECISION", "MIN_PRECISION", "OFFSET_BITS", "exact_truncate", "integer_divisor", "local_failure_rate",
           "local_truncate", "public_integer", "truncation_from_opened", "valid_magnitude"]

OFFSET_BITS = 62
MIN_PRECISION = 8  # fractional bits: fewer leave no room for the kernels' values
MAX_PRECISION = {"exact": 20, "local": 16}  # and the most each truncation keeps reliable (see the module docstring)


def integer_divisor(y: Any) -> int | None:
    """The public integer ``y`` divides by (CrypTen truncates by it), or None when ``y`` is
    not one: an ``int``, an integral ``float``, or a tensor of one integral value.

    Raises:
        ValueError: a tensor of different integers (a share divides by one).
    """
    if isinstance(y, float) and int(y) == y:
        return int(y)
    if isinstance(y, int):
        return y
    if torch.is_tensor(y) and y.numel() > 0 and not (y.is_floating_point() and (y.frac() != 0).any()):
        values = y.flatten().unique()
        if values.numel() != 1:
            raise ValueError("a share divides by one public integer; got a tensor of different integers")
        return int(values[0])
    return None


def public_integer(y: Any) -> Any:
    """``y`` as an ``int`` when it is a float holding a moderate integer, else ``y``: a
    multiplier the shares take as they are, with nothing to truncate."""
    return int(y) if isinstance(y, float) and y.is_integer() and abs(y) < 2**31 else y


def valid_magnitude() -> int:
    """Largest |x| (ring integer) the exact protocol truncates correctly: 2^62 - 1."""
    return (1 << OFFSET_BITS) - 1


def local_failure_rate(x_abs: torch.Tensor) -> torch.Tensor:
    """Per-element probability that CrypTen's local two-party truncation of ring
    integers of magnitude ``x_abs`` fails: ``|x| / 2^64``."""
    return x_abs.double() / 2.0**64


def local_truncate(share: torch.Tensor, d: int) -> torch.Tensor:
    """CrypTen's local truncation of one party's share (fails with :func:`local_failure_rate`)."""
    return share.div(d, rounding_mode="trunc")


def exact_truncate(share: torch.Tensor, d: int, rank: int, pair: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   open_sum) -> torch.Tensor:
    """This party's share of ``x / d`` (see the module docstring).

    Args:
        share: This party's share of ``x`` (int64).
        d: Public divisor, at least 2.
        rank: This party's rank (rank 0 adds the public terms).
        pair: This party's shares of ``(r, q, t)`` for divisor ``d``.
        open_sum: Opens a shared tensor to every party (one round): the sum of all
            parties' arguments.
    """
    r, q, t = pair
    masked = share + r
    if rank == 0:
        masked = masked + (1 << OFFSET_BITS)
    return truncation_from_opened(open_sum(masked), d, rank, q, t)


def truncation_from_opened(c: torch.Tensor, d: int, rank: int, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Steps 2 and 3: this party's share of ``x / d`` from the opened ``c = x + 2^62 + r``
    (also the opening of a sign test with the same mask, :mod:`.dcf`)."""
    out = (c >= 0).long() * t - q
    if rank == 0:
        out = out + udiv(c, d) - (1 << OFFSET_BITS) // d
    return out
