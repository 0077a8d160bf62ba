"""Initial guesses for Newton-type iterations from the range a kernel knows.

An inverse square root or a reciprocal converges from a guess within a constant factor
of its answer. When the input's range [lo, hi] is known (a norm's row variances, a
softmax's row means), cutting it into pieces of ratio 4 and comparing the input with
every knot in one batched comparison (8 rounds, 432 bytes per element and knot) gives
such a guess anywhere in the range, where an exponential or polynomial guess covers
only a narrow part of it or costs many squarings. The pieces' levels are public; the
bits select them by one product with public steps (one truncation).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .fixed_point import on_grid, stack

__all__ = ["geometric_pieces", "piecewise_constant"]


def geometric_pieces(lo: float, hi: float, ratio: float = 4.0) -> tuple[tuple[float, ...], torch.Tensor]:
    """Knots ``lo * ratio^i`` inside (lo, hi), and each piece's geometric middle
    (lowest piece first; the last piece ends at ``hi``)."""
    knots = tuple(lo * ratio**i for i in range(1, math.ceil(math.log(hi / lo, ratio))))
    edges = (lo, *knots, hi)
    middles = torch.tensor([math.sqrt(a * b) for a, b in zip(edges, edges[1:])], dtype=torch.float64)
    return knots, middles


def piecewise_constant(v: Any, knots: tuple[float, ...], levels: torch.Tensor) -> Any:
    """``levels[:, i]`` where v is on the i-th piece (cut at ``knots``), for every element
    of the secret ``v``: a stack of ``levels.shape[0]`` secrets shaped like ``v``.

    Args:
        v: The secret input.
        knots: The increasing cut points of v's range.
        levels: Public (outputs, len(knots) + 1) values, one column per piece.
    """
    flat = v.reshape(-1)  # (elements,): the comparison's circuit keeps few dimensions
    bits = on_grid(stack([flat - knot for knot in knots]).ge(0))  # (knots, elements): at or above each knot
    outputs = levels.shape[0]
    steps = (levels[:, 1:] - levels[:, :-1]).float().view(outputs, len(knots), 1)
    chosen = (bits.unsqueeze(0) * steps).sum(1) + levels[:, 0].float().view(outputs, 1)
    return chosen.reshape(outputs, *v.size())
