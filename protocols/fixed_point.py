"""CrypTen's fixed-point arithmetic in plaintext: the tensor the secure kernels are emulated on.

A :class:`FixedPointTensor` holds float64 values on the grid 2^-p and answers the
CrypTensor interface the secure kernels and the secure plan use, doing what a 2-party
CrypTensor does to its shared integers:

* public numbers and float tensors are encoded as CrypTen encodes them (x 2^p truncated
  toward zero, in the operand's own precision); a Python ``int``, or a ``float`` holding
  an integer (secvit's patch of CrypTen's ``mul``), multiplies without encoding;
* a product (secret x secret, or secret x encoded public), a square, a matmul, a
  convolution is truncated back by 2^p, and a division by a public integer ``d`` truncates
  by ``d``. secvit's exact truncation (:mod:`protocols.truncation`) rounds down or up with
  probability by the remainder (unbiased, within one unit), so the emulation rounds to
  nearest (within two units for ``d`` not a power of two). CrypTen's local truncation, an
  insecure option, is within one unit too, except that each element fails outright with
  probability |x| / 2^64, which :class:`TruncationStats` sums instead of drawing;
* a comparison (``_ltz``) is exact and yields a bit of scale 1 (an "integral" tensor):
  a product by it is not truncated, as in CrypTen's ReLU, x * (x >= 0).

Everything else (shapes, indexing, ``ge``/``relu``/``exp``/``mean``/...) is CrypTen's own
code: its generic functions, written against ``_tensor``, ``shallow_copy`` and the
primitives above, are attached to this class as CrypTen attaches them to ``CrypTensor``.
So a secure kernel run on a FixedPointTensor *is* its emulation, to a few units in the
last place per operation; and since CrypTen runs the same operations one after the other,
the openings it counts (:attr:`FixedPoint.cost`, :mod:`protocols.costs`) are the
kernel's rounds and bytes per party.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from . import costs
from .periodic import FourierSeries
from .truncation import integer_divisor, local_failure_rate, public_integer, valid_magnitude

__all__ = ["FixedPoint", "FixedPointTensor", "TruncationStats", "cat", "contiguous", "from_units", "precision_bits",
           "stack"]


@dataclass
class TruncationStats:
    """The truncations of an emulated run and what they would risk.

    Attributes:
        calls: Truncations (one opening each under exact truncation).
        elements: Elements truncated.
        local_failures: Expected number of elements that CrypTen's local truncation would
            corrupt: the sum of |x| / 2^64 over the shared integers x truncated.
        largest: Largest |x| truncated (exact truncation holds below 2^62).
    """

    calls: int = 0
    elements: int = 0
    local_failures: float = 0.0
    largest: float = 0.0

    def record(self, ring_abs: torch.Tensor, exact_only: bool = False) -> None:
        """Count one truncation of shared integers of magnitudes ``ring_abs``
        (``exact_only``: one that is exact in either mode, so local truncation risks nothing)."""
        self.calls += 1
        if ring_abs.numel():
            self.elements += ring_abs.numel()
            if not exact_only:
                self.local_failures += float(local_failure_rate(ring_abs).sum())
            self.largest = max(self.largest, float(ring_abs.max()))

    @property
    def exact_in_range(self) -> bool:
        """Whether every truncation stayed inside exact truncation's valid range."""
        return self.largest <= valid_magnitude()


class FixedPoint:
    """The arithmetic at ``precision_bits`` fractional bits, and what a run on it counted:
    :attr:`stats` (truncations) and :attr:`cost` (the openings of products and
    comparisons, per party, 2 parties)."""

    def __init__(self, precision_bits: int = 16):
        self.scale = float(2**precision_bits)
        self.stats = TruncationStats()
        self.cost = costs.Cost()

    def encode(self, x: Any, integral: bool = False) -> torch.Tensor:
        """What CrypTen's encoder makes of a public value, as float64: trunc(x 2^p) 2^-p
        (trunc(x) for an integral tensor's scale of 1)."""
        scale = 1.0 if integral else self.scale
        if isinstance(x, (int, float)):
            return torch.tensor(math.trunc(x * scale) / scale, dtype=torch.float64)
        if not x.is_floating_point():
            return x.double()
        return torch.trunc(x * scale).double() / scale

    def tensor(self, x: torch.Tensor) -> "FixedPointTensor":
        """``x`` as a secret, as ``crypten.cryptensor(x)`` would hold it."""
        return FixedPointTensor(self.encode(x), self)

    def truncate(self, v: torch.Tensor, ring_abs: torch.Tensor | None = None, exact_only: bool = False) -> torch.Tensor:
        """``v`` back on the grid; ``ring_abs``: magnitudes of the shared integers truncated
        (by default those of a product of two encoded values, |v| 2^(2p)); ``exact_only``:
        a truncation exact in every mode (:mod:`.periodic`'s)."""
        self.stats.record(v.abs() * self.scale**2 if ring_abs is None else ring_abs, exact_only)
        return torch.round(v * self.scale) / self.scale

    def total_cost(self) -> costs.Cost:
        """Rounds and bytes per party of what ran, exact truncations included."""
        return self.cost + costs.truncation(self.stats.calls, self.stats.elements)


class FixedPointTensor:
    """A secret of a plaintext run: float64 values on the grid (``integral``: a bit or
    integer of scale 1, as CrypTen's comparisons return)."""

    def __init__(self, values: torch.Tensor, fp: FixedPoint, integral: bool = False):
        self._tensor, self.fp, self.integral = values, fp, integral
        self.fixed_mask = None  # a weight's fixed Beaver mask (:mod:`.stationary`): True once fixed

    @staticmethod
    def fix_masks(weights: Sequence["FixedPointTensor"]) -> None:
        """The weights' masks fixed (:func:`~protocols.stationary.fix_masks`): one opening
        of them all; their products then reveal only the other operand, to the owner."""
        weights[0].fp.cost += costs.Cost(1, costs.OPEN_BYTES * sum(w._tensor.numel() for w in weights))
        for w in weights:
            w.fixed_mask = True

    # ---- what CrypTen's generic functions build on ----------------------------------

    def shallow_copy(self) -> "FixedPointTensor":
        return FixedPointTensor(self._tensor, self.fp, self.integral)

    def clone(self) -> "FixedPointTensor":
        return FixedPointTensor(self._tensor.clone(), self.fp, self.integral)

    def new(self, value: Any, **_: Any) -> "FixedPointTensor":
        """A public value as a secret of this arithmetic."""
        return self.fp.tensor(torch.as_tensor(value))

    @property
    def device(self) -> torch.device:
        return self._tensor.device

    @property
    def shape(self) -> torch.Size:
        return self._tensor.shape

    def get_plain_text(self, dst: int | None = None) -> torch.Tensor:
        """The values (float64; ``dst`` is accepted for the CrypTensor interface)."""
        return self._tensor

    def _like(self, values: torch.Tensor, integral: bool | None = None) -> "FixedPointTensor":
        return FixedPointTensor(values, self.fp, self.integral if integral is None else integral)

    def _encode(self, y: Any) -> torch.Tensor:
        return self.fp.encode(y, self.integral)

    def _product(self, values: torch.Tensor, other_integral: bool) -> "FixedPointTensor":
        """A product's result: truncated unless one factor has scale 1."""
        if self.integral or other_integral:
            return self._like(values, self.integral and other_integral)
        return self._like(self.fp.truncate(values), False)

    def _open(self, cost: costs.Cost) -> None:
        self.fp.cost += cost

    def _open_product(self, y: "FixedPointTensor") -> None:
        """A Beaver product's opening: both operands, or only this one, to the owner, when
        ``y`` is a weight with a fixed mask."""
        n = self._tensor.numel()
        self._open(costs.reveal(n) if y.fixed_mask else costs.mul(n, y._tensor.numel()))

    # ---- primitives ------------------------------------------------------------------

    def add(self, y: Any) -> "FixedPointTensor":
        if isinstance(y, FixedPointTensor):
            return self._like(self._tensor + y._tensor, self.integral and y.integral)
        return self._like(self._tensor + self._encode(y))

    def sub(self, y: Any) -> "FixedPointTensor":
        return self.add(-y)

    def neg(self) -> "FixedPointTensor":
        return self._like(-self._tensor)

    def mul(self, y: Any) -> "FixedPointTensor":
        """Secret x secret: one Beaver opening of both operands; an ``int`` (or an integral
        ``float``, as secvit's patch of CrypTen takes it): exact."""
        y = public_integer(y)
        if isinstance(y, int):
            return self._like(self._tensor * y)
        return self._bilinear(torch.mul, y)

    def div(self, y: Any) -> "FixedPointTensor":
        """By a public integer: a truncation by it (none for 1); otherwise a product by the
        public reciprocal (CrypTen's order)."""
        d = integer_divisor(y)
        if d is None:
            if isinstance(y, FixedPointTensor):
                return self.mul(y.reciprocal())
            return self.mul(torch.tensor([y]).reciprocal() if isinstance(y, float) else y.reciprocal())
        values = self._tensor if d > 0 else -self._tensor
        if abs(d) == 1:
            return self._like(values)
        return self._like(self.fp.truncate(values / abs(d), values.abs() * self.fp.scale))

    def square(self) -> "FixedPointTensor":
        self._open(costs.square(self._tensor.numel()))
        return self._product(self._tensor * self._tensor, self.integral)

    def square_div(self, d: int) -> "FixedPointTensor":
        """x^2 / d for a public integer ``d``: one opening and one truncation (by d 2^p)."""
        self._open(costs.square(self._tensor.numel()))
        return self._product_div(self._tensor * self._tensor, d)

    def matmul_div(self, y: "FixedPointTensor", d: int) -> "FixedPointTensor":
        """x @ y / d for a secret ``y`` and a public integer ``d``: one Beaver opening and
        one truncation (by d 2^p)."""
        self._open_product(y)
        return self._product_div(self._tensor @ y._tensor, d)

    def fourier(self, series: "FourierSeries") -> "FixedPointTensor":
        """``f(x)`` (or ``x f(x)``) of a Fourier series (:mod:`.periodic`): one opening and
        one exact truncation of the sum at 2^(q + s) times its scale."""
        if self.integral:
            raise TypeError("a Fourier series reads a fixed-point value")
        self._open(costs.Cost(1, costs.OPEN_BYTES * self._tensor.numel()))
        value = series.reference(self._tensor)
        ring_abs = value.abs() * self.fp.scale * series.divisor(round(math.log2(self.fp.scale)))
        return self._like(self.fp.truncate(value, ring_abs, exact_only=True), False)

    def mul_untruncated(self, y: "FixedPointTensor") -> "FixedPointTensor":
        """x y at twice the fractional bits (no truncation; one Beaver opening). The
        emulation holds its exact value; public constants added to it are encoded at p
        bits here, at 2p under MPC (the same for dyadic constants such as 1/2)."""
        self._open_product(y)
        return self._like(self._tensor * y._tensor, False)

    def square_mul_untruncated(self, weight: "FixedPointTensor | None" = None
                               ) -> tuple["FixedPointTensor", "FixedPointTensor | None"]:
        """x^2 and x w (None without ``weight``) at twice the fractional bits: one opening
        where ``weight`` has a fixed mask, else a square and a Beaver product."""
        n = self._tensor.numel()
        cost = costs.square(n)
        if weight is not None and not weight.fixed_mask:
            cost += costs.mul(n, weight._tensor.numel())
        self._open(cost)
        square = self._like(self._tensor * self._tensor, False)
        return square, None if weight is None else self._like(self._tensor * weight._tensor, False)

    def truncate_wide_at_least(self, thresholds: Sequence[float]) -> tuple["FixedPointTensor", "FixedPointTensor"]:
        """A value at twice the fractional bits back at p (one truncation by 2^p) and
        :meth:`at_least` of it, thresholds encoded at 2p bits: one opening for both."""
        units = self.fp.scale**2
        truncated = self._like(self.fp.truncate(self._tensor, self._tensor.abs() * units), False)
        t = torch.trunc(torch.tensor(thresholds, dtype=torch.float64) * units) / units
        return truncated, self._compared(t)

    def mul_wide(self, wide: "FixedPointTensor") -> "FixedPointTensor":
        """x w for a product w held at 2p bits: one opening, one truncation by 2^(2p)
        (exact in every truncation mode)."""
        self._open_product(wide)
        values = self._tensor * wide._tensor
        return self._like(self.fp.truncate(values, values.abs() * self.fp.scale**3, exact_only=True), False)

    def _product_div(self, product: torch.Tensor, d: int) -> "FixedPointTensor":
        if self.integral:
            raise TypeError("a product divided in its truncation needs fixed-point factors")
        return self._like(self.fp.truncate(product / d, product.abs() * self.fp.scale**2))

    def _bilinear(self, op: Any, y: Any, **kwargs: Any) -> "FixedPointTensor":
        if isinstance(y, FixedPointTensor):
            self._open_product(y)
            return self._product(op(self._tensor, y._tensor, **kwargs), y.integral)
        return self._product(op(self._tensor, self._encode(y), **kwargs), self.integral)

    def matmul(self, y: Any) -> "FixedPointTensor":
        return self._bilinear(torch.matmul, y)

    def conv2d(self, kernel: Any, **kwargs: Any) -> "FixedPointTensor":
        return self._bilinear(F.conv2d, kernel, **kwargs)

    def at_least(self, thresholds: Sequence[float]) -> "FixedPointTensor":
        """[x >= t] as bits of scale 1, stacked over the public thresholds (under MPC: one
        opening and one key of the dealer per element, :mod:`.dcf`)."""
        self._open(costs.sign(self._tensor.numel()))
        return self._compared(self.fp.encode(torch.tensor(thresholds, dtype=torch.float64)))

    def _compared(self, thresholds: torch.Tensor) -> "FixedPointTensor":
        view = thresholds.view(-1, *[1] * self._tensor.dim())
        return self._like((self._tensor.unsqueeze(0) >= view).double(), True)

    def _ltz(self) -> "FixedPointTensor":
        """x < 0 as a bit of scale 1 (CrypTen: a comparison circuit)."""
        self._open(costs.Cost(costs.CMP_ROUNDS, costs.CMP_BYTES * self._tensor.numel()))
        return self._like((self._tensor < 0).double(), True)

    __add__ = __radd__ = add
    __sub__ = sub
    __mul__ = __rmul__ = mul
    __truediv__ = div
    __matmul__ = matmul
    __neg__ = neg

    def __rsub__(self, y: Any) -> "FixedPointTensor":
        return -self + y

    def __repr__(self) -> str:
        return f"FixedPointTensor({self._tensor!r}, integral={self.integral})"


def _attach_crypten_functions() -> None:
    """CrypTen's generic functions, as CrypTen attaches them to ``CrypTensor``."""
    from .backend import crypten_functions

    for module_name in crypten_functions.__all__:
        module = getattr(crypten_functions, module_name)
        for name in module.__all__:
            if name not in FixedPointTensor.__dict__:
                setattr(FixedPointTensor, name, getattr(module, name))


_attach_crypten_functions()


def from_units(units: Any) -> Any:
    """An integral secret counting units of 2^-p as the fixed-point value it stands for:
    the shares unchanged (local)."""
    if isinstance(units, FixedPointTensor):
        return units._like(units._tensor / units.fp.scale, False)
    from .backend import FixedPointEncoder

    result = units.clone()
    result._tensor.encoder = FixedPointEncoder()
    return result


def precision_bits(x: Any) -> int:
    """The fractional bits ``p`` of a fixed-point secret's arithmetic."""
    scale = x.fp.scale if isinstance(x, FixedPointTensor) else x._tensor.encoder.scale
    return round(math.log2(scale))


def contiguous(x: Any) -> Any:
    """``x`` with contiguous storage (after a permute, ``view`` needs it, as in torch)."""
    if isinstance(x, FixedPointTensor):
        return x._like(x._tensor.contiguous())
    result = x.clone()
    result._tensor.share = result._tensor.share.contiguous()
    return result


def cat(tensors: Sequence[Any], dim: int = 0) -> Any:
    """``torch.cat`` of secrets of one kind (CrypTensors or FixedPointTensors)."""
    tensors = list(tensors)
    return type(tensors[0]).cat(tensors, dim=dim)


def stack(tensors: Sequence[Any], dim: int = 0) -> Any:
    """``torch.stack`` of secrets of one kind."""
    tensors = list(tensors)
    return type(tensors[0]).stack(tensors, dim=dim)
