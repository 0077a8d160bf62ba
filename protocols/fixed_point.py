"""Plaintext emulation of CrypTen's fixed-point arithmetic (2 parties).

Values are float64 tensors on the grid 2^-p. CrypTen encodes by truncating x 2^p toward
zero; a product of two encoded values (secret x secret, or secret x public float) is
truncated back by 2^p. secvit's exact truncation (:mod:`protocols.truncation`) rounds
down or up with probability by the remainder (unbiased, within one unit in the last
place), so the emulation rounds to nearest. Division by a public integer ``d`` that is
not a power of two is within two units. (CrypTen's local truncation, an insecure option,
is within one unit too, except that each element fails outright with probability
|x| / 2^64, which the emulation does not model.)
Comparisons are exact. An emulation kernel written with these helpers predicts a secure
kernel's output to a few units in the last place per operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .truncation import local_failure_rate, valid_magnitude

__all__ = ["FixedPoint", "TruncationStats"]


@dataclass
class TruncationStats:
    """What the truncations of an emulated run would risk.

    Attributes:
        elements: Elements truncated.
        local_failures: Expected number of elements that CrypTen's local truncation would
            corrupt: the sum of |x| / 2^64 over the shared integers x truncated.
        largest: Largest |x| truncated (exact truncation holds below 2^62).
    """

    elements: int = 0
    local_failures: float = 0.0
    largest: float = 0.0

    def record(self, ring_abs: torch.Tensor) -> None:
        """Count the truncation of shared integers of magnitudes ``ring_abs``."""
        if ring_abs.numel():
            self.elements += ring_abs.numel()
            self.local_failures += float(local_failure_rate(ring_abs).sum())
            self.largest = max(self.largest, float(ring_abs.max()))

    @property
    def exact_in_range(self) -> bool:
        """Whether every truncation stayed inside exact truncation's valid range."""
        return self.largest <= valid_magnitude()


class FixedPoint:
    """Fixed-point helpers at ``precision_bits`` fractional bits; :attr:`stats` counts
    the truncations they emulate."""

    def __init__(self, precision_bits: int = 16):
        self.scale = float(2**precision_bits)
        self.stats = TruncationStats()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """What ``crypten.cryptensor(x)`` holds: trunc(x 2^p) 2^-p (computed in float32)."""
        return torch.trunc(x.float() * self.scale).double() / self.scale

    def _truncate(self, v: torch.Tensor, ring_abs: torch.Tensor | None = None) -> torch.Tensor:
        """``v`` back on the grid; ``ring_abs``: magnitudes of the shared integers truncated
        (by default those of a product of two encoded values, |v| 2^(2p))."""
        self.stats.record(v.abs() * self.scale**2 if ring_abs is None else ring_abs)
        return torch.round(v * self.scale) / self.scale

    def mul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Product of two encoded values (secret x secret)."""
        return self._truncate(a * b)

    def mul_public(self, a: torch.Tensor, c: float | torch.Tensor) -> torch.Tensor:
        """Product by a public float or float tensor (CrypTen encodes it first)."""
        return self._truncate(a * self.encode(torch.as_tensor(c, dtype=torch.float32)))

    def square(self, a: torch.Tensor) -> torch.Tensor:
        return self._truncate(a * a)

    def div_int(self, a: torch.Tensor, n: int) -> torch.Tensor:
        """Division by a public integer (CrypTen truncates each share)."""
        return self._truncate(a / n, a.abs() * self.scale)

    def mean(self, a: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return self.div_int(a.sum(dim, keepdim=True), a.shape[dim])

    def exp(self, x: torch.Tensor, iters: int = 8) -> torch.Tensor:
        """CrypTen's exp: (1 + x / 2^iters)^(2^iters) by ``iters`` squarings."""
        y = self.div_int(x, 2**iters) + 1.0
        for _ in range(iters):
            y = self.square(y)
        return y

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        return x * (x >= 0)
