"""Protocol registry: every MPC-friendly kernel with its secure, reference and emulation forms.

Entries declare, tests prove: ``tests/test_protocol_registry.py`` runs every entry
(secure vs emulation, emulation vs reference on the declared range, measured rounds
and bytes vs the declared cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .costs import Cost, truncation

__all__ = ["KINDS", "Protocol", "get", "names", "protocols", "register"]

KINDS = ("softmax", "activation", "norm")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """One MPC-friendly operation (fields by keyword only).

    Attributes:
        name: Registry key, e.g. ``softmax.2quad``.
        kind: ``softmax`` (over the last dim), ``activation`` (elementwise) or ``norm``
            (over the last dim, optional per-channel weight and bias).
        secure: Kernel on CrypTensors.
        reference: Differentiable plaintext kernel (what training uses).
        emulate: Plaintext kernel of the secure arithmetic, ``emulate(x, fp, ...)`` with
            a :class:`~protocols.fixed_point.FixedPoint`.
        formula: One-line formula.
        paper: Where the method comes from.
        valid_range: Input interval on which ``tolerance`` holds.
        tolerance: Max abs error of emulation vs reference on ``valid_range``.
        cost: Rounds and bytes per party (2 parties) of one call on a shape, without
            truncations (:meth:`total_cost` adds them).
    """

    name: str
    kind: str
    secure: Callable[..., Any]
    reference: Callable[..., Any]
    emulate: Callable[..., Any]
    formula: str
    paper: str
    valid_range: tuple[float, float]
    tolerance: float
    cost: Callable[[tuple[int, ...]], Cost]
    params: dict[str, Any] = field(default_factory=dict)

    def total_cost(self, shape: tuple[int, ...]) -> Cost:
        """Rounds and bytes per party of one call on ``shape``: :attr:`cost` plus the
        exact truncations the secure kernel runs (counted from a dry run of it)."""
        from .backend import crypten, truncations_of

        def call() -> None:
            x = crypten.cryptensor(torch.zeros(shape), src=0)
            extra = {} if self.kind != "norm" else {k: crypten.cryptensor(torch.ones(shape[-1]), src=0)
                                                    for k in ("weight", "bias")}
            self.secure(x, **extra)

        return self.cost(shape) + truncation(*truncations_of(call))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"protocol {self.name}: kind must be one of {KINDS}, got {self.kind!r}")


_REGISTRY: dict[str, Protocol] = {}


def register(protocol: Protocol) -> Protocol:
    """Add ``protocol``; a name registered twice raises."""
    if protocol.name in _REGISTRY:
        raise ValueError(f"protocol {protocol.name!r} is already registered")
    _REGISTRY[protocol.name] = protocol
    return protocol


def get(name: str) -> Protocol:
    """The protocol called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names(kind: str | None = None) -> list[str]:
    """Registered names, optionally of one kind."""
    return sorted(n for n, p in _REGISTRY.items() if kind is None or p.kind == kind)


def protocols() -> list[Protocol]:
    """All registered protocols, by name."""
    return [_REGISTRY[n] for n in names()]
