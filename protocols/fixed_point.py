"""Plaintext emulation of CrypTen's fixed-point arithmetic (2 parties).

Values are float64 tensors on the grid 2^-p. CrypTen encodes by truncating x 2^p toward
zero; a product of two encoded values (secret x secret, or secret x public float) is
truncated back by 2^p, each party truncating its own share: the sum is off by at most
one unit in the last place, without bias (one share is positive, the other negative),
so the emulation rounds to nearest. Division by a public integer truncates the same way.
Comparisons are exact. An emulation kernel written with these helpers predicts a secure
kernel's output to a few units in the last place per operation.
"""

from __future__ import annotations

import torch

__all__ = ["FixedPoint"]


class FixedPoint:
    """Fixed-point helpers at ``precision_bits`` fractional bits."""

    def __init__(self, precision_bits: int = 16):
        self.scale = float(2**precision_bits)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """What ``crypten.cryptensor(x)`` holds: trunc(x 2^p) 2^-p (computed in float32)."""
        return torch.trunc(x.float() * self.scale).double() / self.scale

    def _truncate(self, v: torch.Tensor) -> torch.Tensor:
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
        return self._truncate(a / n)

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
