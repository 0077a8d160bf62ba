"""Communication cost of CrypTen's 2-party primitives (per party, TFP triples).

CrypTen counts 16 bytes per opened element per party (8-byte ring elements, both
directions of the exchange), and 8 per element of a reveal to one party (a message one
way: each side counts it once). A Beaver product opens both masked operands (1 round); a
product by the owner's weight with a fixed mask (:mod:`.stationary`) reveals the
activation to the owner (1 round);
a square opens one; CrypTen's comparison (``_ltz``: arithmetic-to-binary conversion and a
carry circuit) takes 8 rounds and 432 bytes per element, secvit's sign test with the
dealer's keys (``at_least``, :mod:`.dcf`) opens one masked tensor. Each truncation (after a product, a
product by a public float, or a division by a public integer) opens one masked tensor:
1 round, 16 bytes per element (:mod:`.truncation`). The emulation's tensor
(:class:`~protocols.fixed_point.FixedPointTensor`) charges these as a kernel runs on it,
which gives every protocol's cost
(:meth:`Protocol.total_cost <protocols.registry.Protocol.total_cost>`); these constants
were measured here and ``tests/test_protocol_registry.py`` asserts the counted cost of
every protocol against a real run.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CMP_BYTES", "CMP_ROUNDS", "OPEN_BYTES", "REVEAL_BYTES", "Cost", "mul", "reveal", "sign", "square",
           "truncation"]

OPEN_BYTES = 16
REVEAL_BYTES = 8
CMP_ROUNDS, CMP_BYTES = 8, 432


@dataclass(frozen=True)
class Cost:
    """Rounds and bytes of one call, per party."""

    rounds: int = 0
    bytes: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.rounds + other.rounds, self.bytes + other.bytes)


def truncation(calls: int, elements: int) -> Cost:
    """``calls`` exact truncations of ``elements`` elements in all."""
    return Cost(calls, OPEN_BYTES * elements)


def mul(n_a: int, n_b: int | None = None) -> Cost:
    """Beaver product of tensors with ``n_a`` and ``n_b`` elements (broadcast allowed)."""
    return Cost(1, OPEN_BYTES * (n_a + (n_a if n_b is None else n_b)))


def square(n: int) -> Cost:
    return Cost(1, OPEN_BYTES * n)


def sign(n: int) -> Cost:
    """The sign test of ``n`` elements with the dealer's comparison keys (:mod:`.dcf`)."""
    return Cost(1, OPEN_BYTES * n)


def reveal(n: int) -> Cost:
    """A masked tensor of ``n`` elements sent to one party (:mod:`.stationary`'s products)."""
    return Cost(1, REVEAL_BYTES * n)
