"""Correlated randomness of a forward pass: the requests, and what each party and the dealer compute.

A secure forward pass asks for correlated values in an order fixed by the plan and the
batch shape alone (shapes are public): Beaver triples for products, square pairs, binary
triples for comparisons, random bits for B2A, and truncation pairs
(:mod:`.truncation`). Each request is one row of a fixed-width int64 table
(:func:`~.requests.encode`), so the list crosses the network as a tensor, bounds-checked on arrival
(:func:`~.requests.decode`), never as a pickled object.

Every value is additively shared (XOR-shared for binary triples). Each computing party
``i`` draws its share of every value from its keyed stream with the dealer
(:class:`~.randomness.KeyedStream`), in request order; only the *receiver* (rank 0) gets
the shares that make the correlation hold (``c``, ``r^2``, ...) as *corrections* from
the dealer, who holds every party's key and so knows every share. Party i's view: its
own stream (uniform) and, for the receiver, corrections ``z - sum_{j != 0} z_j``, uniform
too because party 1's shares are unknown to it. Neither learns anything about the other's
inputs; the dealer learns nothing, since it never sees an opened value.

The functions here are the single description of that arithmetic:
:func:`party_draws` (what a party reads from its stream and the corrections) and
:func:`dealer_corrections` (what the dealer computes) are written against the same table.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterator, Sequence

import torch

from .dcf import CW_WORDS, sign_key_values
from .periodic import trig_values
from .randomness import KeyedStream
from .requests import STATIONARY, TRIPLES, Request, RequestError

__all__ = [
    "correction_numel",
    "dealer_corrections",
    "dealt_numel",
    "first_party_values",
    "party_draws",
    "public_product",
    "stream_bytes",
    "truncation_values",
    "udiv",
]

def udiv(x: torch.Tensor, d: int) -> torch.Tensor:
    """floor(x_u / d) for int64 ``x`` read as unsigned 64-bit ``x_u``, public ``d >= 2``."""
    if d & (d - 1) == 0:
        f = d.bit_length() - 1
        return (x >> f) & ((1 << (64 - f)) - 1)
    low = x & ((1 << 63) - 1)  # x_u - 2^63 where the top bit is set
    top = (x < 0).long()
    return low // d + top * ((1 << 63) // d + (low % d + (1 << 63) % d) // d)


def _wrapped(v: int) -> int:
    """A Python integer as the int64 with the same residue mod 2^64."""
    return (v + (1 << 63)) % (1 << 64) - (1 << 63)


def truncation_values(r: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A truncation pair's ``q = floor(r_u / d)`` and ``t = msb(r) floor(2^64 / d)`` (mod 2^64)."""
    return udiv(r, d), (r < 0).long() * _wrapped((1 << 64) // d)


@functools.lru_cache(maxsize=4096)
def _output_shape(req: Request) -> tuple[int, ...]:
    """The shape of ``req``'s ``out`` values (cached: shape inference on ``meta`` tensors
    took 0.1 ms, more than drawing a small request's values)."""
    if req.kind in TRIPLES + STATIONARY:
        meta = torch.empty(req.size0, device="meta"), torch.empty(req.size1, device="meta")
        if req.op == "conv2d":
            return tuple(torch.nn.functional.conv2d(*meta, **req.conv_kwargs()).shape)
        return tuple(getattr(torch, req.op)(*meta).shape)
    if req.kind in ("binary", "ssquare"):
        return tuple(torch.broadcast_shapes(req.size0, req.size1))
    if req.kind == "trig":
        return ((4 if req.args[5] else 2) * req.args[1], *req.size0)
    if req.kind in ("sign", "tsign"):
        return (*req.size0, CW_WORDS)
    return req.size0


def _numel(req: Request, names: tuple[str, ...]) -> int:
    return sum(math.prod(_shape(req, key)) for name, key, _ in _PLAN[req.kind] if name in names)


def correction_numel(req: Request) -> int:
    """How many int64 values the receiver gets from the dealer for ``req`` (its
    corrections and the values dealt to every party)."""
    return _numel(req, _CORRECTED[req.kind] + _DEALT.get(req.kind, ()))


def dealt_numel(req: Request) -> int:
    """How many int64 values every other party gets from the dealer for ``req``."""
    return _numel(req, _DEALT.get(req.kind, ()))


# What a party draws per request, in this order: (name, shape key, stream method); the
# names in _CORRECTED are the receiver's corrections instead of stream draws, those in
# _DEALT come whole from the dealer to every party (a comparison key's correction words,
# common to both keys; each party's own root seed is a stream draw).
_PLAN: dict[str, list[tuple[str, str, str]]] = {
    "mul": [("a", "size0", "ring"), ("b", "size1", "ring"), ("c", "out", "ring")],
    "matmul": [("a", "size0", "ring"), ("b", "size1", "ring"), ("c", "out", "ring")],
    "conv2d": [("a", "size0", "ring"), ("b", "size1", "ring"), ("c", "out", "ring")],
    "square": [("r", "size0", "ring"), ("r2", "size0", "ring")],
    "ssquare": [("a", "size0", "ring"), ("a2", "size0", "ring"), ("c", "out", "ring")],
    "binary": [("a", "size0", "ring"), ("b", "size1", "ring"), ("c", "out", "ring")],
    "b2a": [("bit", "size0", "bit"), ("r", "size0", "ring")],
    "trunc": [("r", "size0", "ring"), ("q", "size0", "ring"), ("t", "size0", "ring")],
    "mask": [("b", "size0", "ring")],
    "trig": [("r", "size0", "ring"), ("t", "out", "ring")],
    "sign": [("r", "size0", "ring"), ("seed", "seed", "ring"), ("high", "size0", "ring"), ("cw", "out", "ring")],
    "tsign": [("r", "size0", "ring"), ("q", "size0", "ring"), ("t", "size0", "ring"), ("seed", "seed", "ring"),
              ("high", "size0", "ring"), ("cw", "out", "ring")],
    **{kind: [("a", "size0", "ring"), ("c", "out", "ring")] for kind in STATIONARY},
}
_CORRECTED = {"mul": ("c",), "matmul": ("c",), "conv2d": ("c",), "square": ("r2",), "ssquare": ("a2", "c"),
              "binary": ("c",), "b2a": ("r",), "trunc": ("q", "t"), "mask": (), "trig": ("t",), "sign": ("high",),
              "tsign": ("q", "t", "high"),
              **{kind: ("c",) for kind in STATIONARY}}
_DEALT = {"sign": ("cw",), "tsign": ("cw",)}


def _shape(req: Request, key: str) -> tuple[int, ...]:
    if key == "seed":  # a 128-bit root seed per element
        return (*req.size0, 2)
    return _output_shape(req) if key == "out" else getattr(req, key)


def stream_bytes(requests: Sequence[Request], receiver: bool) -> int:
    """How many bytes of its stream a party reads for ``requests`` (:func:`party_draws`;
    the receiver reads no stream for the values it gets as corrections)."""
    return 8 * sum(math.prod(_shape(req, key)) for req in requests for name, key, _ in _PLAN[req.kind]
                   if not (receiver and name in _CORRECTED[req.kind]) and name not in _DEALT.get(req.kind, ()))


def party_draws(req: Request, stream: KeyedStream, corrections: Callable[[int], torch.Tensor] | None,
                dealt: Callable[[int], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """This party's shares of ``req``'s values.

    Args:
        req: The request.
        stream: The party's keyed stream with the dealer.
        corrections: For the receiver, a function returning its next ``n`` corrections;
            None on every other party.
        dealt: A function returning the next ``n`` values the dealer sent whole (the
            receiver's come with its corrections); needed only by requests that have them.
    """
    out = {}
    for name, key, method in _PLAN[req.kind]:
        shape = _shape(req, key)
        if name in _DEALT.get(req.kind, ()):
            if dealt is None:
                raise RequestError(f"a {req.kind} request needs the values the dealer sends every party")
            out[name] = dealt(math.prod(shape)).view(shape)
        elif corrections is not None and name in _CORRECTED[req.kind]:
            out[name] = corrections(math.prod(shape)).view(shape)
        else:
            out[name] = stream.bits(shape, 1) if method == "bit" else stream.ring(shape)
    return out


def _combine(req: Request, draws: list[dict[str, torch.Tensor]], masks: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The correlated values (corrected or dealt), from every party's draws (their
    plaintext sums: a, b / r / bit) and the fixed masks (``masks``, by id; a ``mask``
    request adds one)."""
    kind = req.kind

    def value(name: str) -> torch.Tensor:
        return _reduce(kind, name, [d[name] for d in draws])

    if kind == "mask":
        masks[req.mask_id] = value("b")
        return {}
    if kind in TRIPLES + STATIONARY:
        return {"c": public_product(req, value("a"), value("b") if kind in TRIPLES else _fixed_mask(req, masks))}
    if kind == "square":
        r = value("r")
        return {"r2": r * r}
    if kind == "ssquare":
        a = value("a")
        return {"a2": a * a, "c": public_product(req, a, _fixed_mask(req, masks))}
    if kind == "binary":
        return {"c": value("a") & value("b")}
    if kind == "b2a":
        return {"r": value("bit")}
    if kind == "trig":
        return {"t": trig_values(value("r"), *req.args)}
    if kind in ("sign", "tsign"):
        if len(draws) != 2:
            raise RequestError(f"comparison keys are for two parties, not {len(draws)}")
        r = value("r")
        high, words = sign_key_values(r, [d["seed"] for d in draws])
        pair = dict(zip("qt", truncation_values(r, req.args[0]))) if kind == "tsign" else {}
        return pair | {"high": high, "cw": words}
    q, t = truncation_values(value("r"), req.args[0])
    return {"q": q, "t": t}


def public_product(req: Request, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a (*) b`` for a triple or stationary request: its product (elementwise for
    ``ssquare``, broadcast), on ring integers."""
    if req.kind == "ssquare":
        return a * b
    return getattr(torch, req.op)(a, b, **(req.conv_kwargs() if req.op == "conv2d" else {}))


def _fixed_mask(req: Request, masks: dict[int, torch.Tensor]) -> torch.Tensor:
    mask = masks.get(req.mask_id)
    if mask is None or tuple(mask.shape) != req.size1:
        raise RequestError(f"{req.kind} request for fixed mask {req.mask_id} of shape {req.size1}: "
                           f"{'no such mask' if mask is None else f'the mask has shape {tuple(mask.shape)}'}")
    return mask


def _reduce(kind: str, name: str, shares: list[torch.Tensor]) -> torch.Tensor:
    xor = kind == "binary" or (kind == "b2a" and name == "bit")
    total = shares[0].clone()
    for s in shares[1:]:
        total = total ^ s if xor else total + s
    return total


def dealer_corrections(requests: Sequence[Request], streams: Sequence[KeyedStream],
                       masks: dict[int, torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per request, the receiver's (rank 0's) corrections and the values dealt to every
    other party, as two flat tensors (the receiver's include its dealt values, in
    :func:`party_draws`'s order).

    ``streams[i]`` is the dealer's copy of party ``i``'s stream; the dealer reads each
    exactly as :func:`party_draws` does on that party. ``masks``: the fixed masks of the
    session so far, by id (``mask`` requests add to it; it outlives one table).
    """
    for req in requests:
        parts, dealt = [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, dtype=torch.int64)]
        for name, value in _receiver_values(req, streams, masks)[1].items():
            if name in _DEALT.get(req.kind, ()):
                dealt.append(value.reshape(-1))
            parts.append(value.reshape(-1))
        yield torch.cat(parts), torch.cat(dealt)


def _placeholder(n: int) -> torch.Tensor:
    """What a dealer's copy of a party's draws holds for a corrected or dealt value: nobody
    draws it, and nobody reads it (uninitialised)."""
    return torch.empty(n, dtype=torch.int64)


def _receiver_values(req: Request, streams: Sequence[KeyedStream], masks: dict[int, torch.Tensor]
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The receiver's (rank 0's) draws of ``req`` from ``streams[0]`` and, by name, its
    corrections (the values less every other party's shares, drawn from ``streams[1:]``)
    and the dealt values (whole)."""
    draws = [party_draws(req, s, _placeholder if i == 0 else None, _placeholder) for i, s in enumerate(streams)]
    xor = req.kind == "binary"
    corrected = {}
    for name, value in _combine(req, draws, masks).items():
        if name not in _DEALT.get(req.kind, ()):
            for other in draws[1:]:  # in place: every value _combine returns is its own
                value = value.bitwise_xor_(other[name]) if xor else value.sub_(other[name])
        corrected[name] = value
    return draws[0], corrected


def first_party_values(req: Request, own: KeyedStream, peer: KeyedStream, masks: dict[int, torch.Tensor]
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Party 0's shares of ``req`` where it deals itself (TFP, two parties): the dealer's
    arithmetic with ``own`` (party 0's local stream) as its own draws and ``peer`` (the
    stream it shares with party 1, which draws its shares from it by :func:`party_draws`)
    as party 1's. Returns the shares and the values party 1 must receive whole (flat)."""
    draws, corrected = _receiver_values(req, (own, peer), masks)
    dealt = [corrected[name].reshape(-1) for name in _DEALT.get(req.kind, ())]
    return draws | corrected, torch.cat(dealt) if dealt else torch.zeros(0, dtype=torch.int64)
