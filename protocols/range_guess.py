"""Initial guesses for Newton-type iterations from the range a kernel knows.

An inverse square root or a reciprocal converges from a guess within a constant factor
of its answer. When the input's range [lo, hi] is known (a norm's row variances, a
softmax's row means), cutting it into pieces of ratio 4 and comparing the input with
every knot in one batched comparison gives such a guess anywhere in the range, where an
exponential or polynomial guess covers only a narrow part of it or costs many squarings.
The comparison is the sign test with the dealer's keys (:mod:`.dcf`: 1 round, 16 bytes
per element whatever the number of knots; CrypTen's circuit took 8 rounds and 432 per
element and knot). The pieces' levels are public; the
bits (integers) select them by a product with public integer steps: no truncation.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .fixed_point import from_units, precision_bits

__all__ = ["geometric_pieces", "piece_bits", "piecewise_constant", "select_units"]


def geometric_pieces(lo: float, hi: float, ratio: float = 4.0) -> tuple[tuple[float, ...], torch.Tensor]:
    """Knots ``lo * ratio^i`` inside (lo, hi), and each piece's geometric middle
    (lowest piece first; the last piece ends at ``hi``)."""
    knots = tuple(lo * ratio**i for i in range(1, math.ceil(math.log(hi / lo, ratio))))
    edges = (lo, *knots, hi)
    middles = torch.tensor([math.sqrt(a * b) for a, b in zip(edges, edges[1:])], dtype=torch.float64)
    return knots, middles


def piece_bits(v: Any, knots: tuple[float, ...]) -> Any:
    """Whether each element of the secret ``v`` is at or above each knot: integral bits
    of shape (knots, elements), one sign test per element (1 round with the dealer's
    keys, one key per element evaluated at every knot)."""
    return v.reshape(-1).at_least(knots)


def select_units(bits: Any, levels: torch.Tensor, unit_bits: int, size: Any) -> Any:
    """``levels[:, i]`` in units of 2^-unit_bits (integral secrets: a product by one is not
    truncated) where the :func:`piece_bits` say the element is on the i-th piece: a stack
    of ``levels.shape[0]`` secrets of shape ``size``. Local: the bits select integer steps.

    Args:
        bits: :func:`piece_bits` of the input.
        levels: Public (outputs, knots + 1) values, one column per piece.
        unit_bits: The fractional bits of the result's units.
        size: The input's shape.
    """
    units = torch.round(levels.double() * 2.0**unit_bits).long()
    outputs = levels.shape[0]
    steps = (units[:, 1:] - units[:, :-1]).view(outputs, units.shape[1] - 1, 1)
    chosen = (bits.unsqueeze(0) * steps).sum(1) + units[:, :1]
    return chosen.reshape(outputs, *size)


def piecewise_constant(v: Any, knots: tuple[float, ...], levels: torch.Tensor) -> Any:
    """``levels[:, i]`` (public (outputs, len(knots) + 1) values) as fixed-point secrets
    where v is on the i-th piece (cut at the increasing ``knots``): a stack of
    ``levels.shape[0]`` secrets shaped like ``v``, one comparison and no truncation."""
    return from_units(select_units(piece_bits(v, knots), levels, precision_bits(v), v.size()))
