"""Protocol registry: every MPC-friendly kernel with its secure and reference forms.

Entries declare, tests prove: ``tests/test_protocol_registry.py`` runs every entry
(secure vs emulation, emulation vs reference on the declared range, measured rounds
and bytes vs the counted cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .costs import Cost
from .fixed_point import FixedPoint

__all__ = ["KINDS", "Protocol", "get", "names", "protocols", "register"]

KINDS = ("softmax", "activation", "norm")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """One MPC-friendly operation (fields by keyword only).

    The secure kernel is its only description of the arithmetic: :meth:`emulate` runs it
    on :class:`~protocols.fixed_point.FixedPointTensor` secrets and :meth:`total_cost`
    counts the openings that run makes.

    Attributes:
        name: Registry key, e.g. ``softmax.2quad``.
        kind: ``softmax`` (over the last dim), ``activation`` (elementwise) or ``norm``
            (over the last dim, optional per-channel weight and bias).
        secure: Kernel on CrypTensors (or on anything with their interface).
        reference: Differentiable plaintext kernel (what training uses).
        formula: One-line formula.
        paper: Where the method comes from.
        valid_range: Input interval on which ``tolerance`` holds.
        tolerance: Max abs error of emulation vs reference on ``valid_range``.
        divisor: For a kernel that only divides its input by a public integer of the row
            length ``n`` (``softmax.scaling``: s / N), that integer: an attention folds
            the division into the truncation of its logits' product (one round fewer).
    """

    name: str
    kind: str
    secure: Callable[..., Any]
    reference: Callable[..., Any]
    formula: str
    paper: str
    valid_range: tuple[float, float]
    tolerance: float
    divisor: Callable[[int], int] | None = None

    def emulate(self, x: torch.Tensor, fp: FixedPoint | None = None, **kwargs: Any) -> torch.Tensor:
        """What the secure kernel computes for ``x`` (float64), in plaintext: the kernel
        run on fixed-point secrets (``fp``: the arithmetic, e.g. to read its counts);
        tensor keyword arguments (a norm's weight and bias) are secrets too, the weight
        with a fixed mask (:mod:`.stationary`: its opening is paid at load)."""
        fp = fp or FixedPoint()
        secrets = {k: fp.tensor(v) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        if torch.is_tensor(kwargs.get("weight")):  # the owner's weight, masked once at load as the secure plan does
            secrets["weight"].fixed_mask = True
        return self.secure(fp.tensor(x), **secrets).get_plain_text()

    def total_cost(self, shape: tuple[int, ...]) -> Cost:
        """Rounds and bytes per party (2 parties, exact truncation) of one call on ``shape``,
        counted from an emulated run of the secure kernel."""
        fp = FixedPoint()
        extra = {"weight": torch.ones(shape[-1]), "bias": torch.ones(shape[-1])} if self.kind == "norm" else {}
        self.emulate(torch.zeros(shape), fp, **extra)
        return fp.total_cost()

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
