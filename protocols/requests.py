"""The request table of a forward pass's correlated randomness: what each request is, and
its wire form.

A secure forward pass asks for correlated values in an order fixed by the plan and the
batch shape alone (shapes are public). Each request is one row of a fixed-width int64
table (:func:`encode`), so the list crosses the network as a tensor, bounds-checked on
arrival (:func:`decode`), never as a pickled object. What the values are and who computes
them: :mod:`.preprocessing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .periodic import MAX_HARMONICS

__all__ = ["KINDS", "MAX_DIMS", "MAX_ELEMENTS", "MAX_REQUESTS", "STATIONARY", "TRIPLES", "WIDTH", "Request", "RequestError", "decode",
           "encode"]

MAX_DIMS = 8
MAX_ELEMENTS = 1 << 28  # per request: 2 GiB of int64
MAX_REQUESTS = 1 << 20
_CONV_ARGS = 7  # stride (2), padding (2), dilation (2), groups
_ARGS = _CONV_ARGS + 1  # and a fixed mask's id
WIDTH = 1 + 2 * (1 + MAX_DIMS) + _ARGS


class RequestError(ValueError):
    """A request table that is malformed or out of bounds."""


# kind -> (code, corrections per output element group). Codes are the wire format.
KINDS = {"mul": 1, "matmul": 2, "conv2d": 3, "square": 4, "binary": 5, "b2a": 6, "trunc": 7, "mask": 8,
         "smul": 9, "smatmul": 10, "sconv2d": 11, "trig": 12, "sign": 13, "ssquare": 14,
         "tsign": 15}
_NAMES = {code: name for name, code in KINDS.items()}
TRIPLES = ("mul", "matmul", "conv2d")
STATIONARY = ("smul", "smatmul", "sconv2d")  # triples for a fixed mask: fresh a, c = a (*) B


@dataclass(frozen=True)
class Request:
    """One correlated value a forward pass needs.

    Attributes:
        kind: A key of :data:`KINDS`.
        size0: First operand's shape (triples), or the value's shape.
        size1: Second operand's shape (triples, binary triples); empty otherwise.
        args: conv2d's stride, padding, dilation (2 each) and groups; for ``trunc`` the
            public divisor in ``args[0]``; for ``trig`` (:mod:`.periodic`) the modulus
            bits, harmonics, scale bits, first harmonic, step and whether the masks'
            products with R come too; for ``mask`` (a fixed mask B of
            :mod:`.stationary`) its id in ``args[0]``, and for the triples of a fixed
            mask (``smul``, ``smatmul``, ``sconv2d``) the mask's id last. ``ssquare``
            (:func:`~.stationary.square_and_stationary_product`): a square pair
            ``(a, a^2)`` whose ``a`` also makes ``c = a * B`` for the fixed mask ``B`` of
            shape ``size1`` (its id in ``args[0]``). A ``sign`` request (:mod:`.dcf`:
            the keys of a one-round comparison) has none; ``tsign`` (the keys and a
            truncation pair of the same mask ``r``, one opening for both) the divisor.
    """

    kind: str
    size0: tuple[int, ...]
    size1: tuple[int, ...] = ()
    args: tuple[int, ...] = ()

    def conv_kwargs(self) -> dict[str, object]:
        s0, s1, p0, p1, d0, d1, g = self.args[:_CONV_ARGS]
        return {"stride": (s0, s1), "padding": (p0, p1), "dilation": (d0, d1), "groups": g}

    @property
    def op(self) -> str:
        """The product of a triple (``mul``, ``matmul``, ``conv2d``)."""
        return self.kind.removeprefix("s") if self.kind in STATIONARY else self.kind

    @property
    def mask_id(self) -> int:
        """The fixed mask a ``mask`` request draws or a stationary triple uses."""
        return self.args[0] if self.kind == "mask" else self.args[-1]


def _row(req: Request) -> list[int]:
    def dims(size: tuple[int, ...]) -> list[int]:
        return [len(size), *size, *[0] * (MAX_DIMS - len(size))]

    args = list(req.args) + [0] * (_ARGS - len(req.args))
    return [KINDS[req.kind], *dims(req.size0), *dims(req.size1), *args]


def encode(requests: Sequence[Request]) -> torch.Tensor:
    """The requests as an ``(n, WIDTH)`` int64 table."""
    for req in requests:
        if len(req.size0) > MAX_DIMS or len(req.size1) > MAX_DIMS:
            raise RequestError(f"{req.kind} request of {max(len(req.size0), len(req.size1))} dims; at most {MAX_DIMS}")
    return torch.tensor([_row(r) for r in requests], dtype=torch.int64).reshape(len(requests), WIDTH)


def _dims(row: list[int], at: int) -> tuple[int, ...]:
    n = row[at]
    if not 0 <= n <= MAX_DIMS:
        raise RequestError(f"request with {n} dims; at most {MAX_DIMS}")
    size = tuple(row[at + 1 : at + 1 + n])
    if any(not 0 <= s <= MAX_ELEMENTS for s in size) or math.prod(size) > MAX_ELEMENTS:
        raise RequestError(f"request of shape {size}: at most {MAX_ELEMENTS} elements")
    return size


def decode(table: torch.Tensor) -> list[Request]:
    """Check a received table and turn it back into requests.

    Raises:
        RequestError: wrong dtype or width, too many rows, an unknown kind, a shape out
            of bounds, or arguments that make no sense (e.g. a divisor below 2).
    """
    if table.dtype != torch.int64 or table.dim() != 2 or table.shape[1] != WIDTH:
        raise RequestError(f"request table must be int64 (n, {WIDTH}), got {table.dtype} {tuple(table.shape)}")
    if table.shape[0] > MAX_REQUESTS:
        raise RequestError(f"{table.shape[0]} requests; at most {MAX_REQUESTS}")
    requests = []
    for row in table.tolist():
        if row[0] not in _NAMES:
            raise RequestError(f"unknown request kind {row[0]}")
        kind = _NAMES[row[0]]
        args = tuple(row[1 + 2 * (1 + MAX_DIMS) :])
        if kind in ("trunc", "tsign"):
            if args[0] < 2 or any(args[1:]):
                raise RequestError(f"truncation by {args[0]}: the divisor must be an integer >= 2")
            args = args[:1]
        elif kind in ("mask", "smul", "smatmul", "ssquare"):
            if args[0] < 0 or any(args[1:]):
                raise RequestError(f"{kind} request with arguments {args}: expected a mask id >= 0")
            args = args[:1]
        elif kind == "trig":
            m, count, scale, first, step, products = args[:6]
            if not (1 <= m <= 62 and 1 <= count <= MAX_HARMONICS and 1 <= scale <= 30 and first >= 1 and step >= 1
                    and first + (count - 1) * step < 1 << 20 and products in (0, 1)) or any(args[6:]):
                raise RequestError(f"trig request with arguments {args}: expected modulus bits in [1, 62], "
                                   f"1 to {MAX_HARMONICS} harmonics, scale bits in [1, 30], first and step >= 1, "
                                   "products 0 or 1")
            args = args[:6]
        elif kind in ("conv2d", "sconv2d"):
            conv = args[:_CONV_ARGS]
            if any(a < 0 for a in args) or min(conv[0], conv[1], conv[4], conv[5], conv[6]) < 1:
                raise RequestError(f"conv2d arguments {args} out of range")
            if kind == "conv2d" and args[-1]:
                raise RequestError(f"conv2d request with a mask id {args[-1]}")
            args = args if kind == "sconv2d" else conv
        elif any(args):
            raise RequestError(f"{kind} request with arguments {args}")
        else:
            args = ()
        requests.append(Request(kind, _dims(row, 1), _dims(row, 2 + MAX_DIMS), args))
    return requests
