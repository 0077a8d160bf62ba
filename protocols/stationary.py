"""Weight-stationary Beaver masks: the owner's weights are masked once per model load, and
each product by one is a single message to the owner.

A Beaver product of a secret activation ``X`` by a secret weight ``W`` opens ``X - A``
and ``W - B`` to every party and uses shares of a triple (A, B, C = A (*) B) (``(*)``:
the elementwise product, a matmul or a conv2d). Two things make a product by the owner's
weight cheaper:

1. **Fixed mask.** The weight is the same for every image, so its mask need not be fresh:
   at load, each party takes a share of a uniform mask ``B`` from the correlated-randomness
   provider and ``F = W - B`` is opened once, for every weight in one round. Each product
   then asks only for a fresh ``A`` and ``C = A (*) B`` for that fixed ``B``.
2. **One-sided opening.** The owner knows ``W`` in the clear, so only the owner needs
   ``E = X - A``: every other party sends its share of ``X - A`` to the owner (one
   message, one way), and

       X (*) W = E (*) W + [A] (*) F + [C]    (E (*) W added by the owner alone)

   since ``A (*) W = A (*) F + A (*) B``. No other party learns anything in the product.
   ``[A] (*) F + [C]`` needs no input: the provider adds it to ``[C]`` (the dealer's
   provider before the online phase, with the rest of a forward pass's values), so
   online the owner computes one product and every other party none.

Security: ``F`` is ``W`` masked by a uniform ``B`` that is used for nothing else, and
``E`` is ``X`` masked by a fresh uniform ``A`` that the owner never sees, so what the
owner receives is uniform and independent whatever the secrets; the other parties
receive nothing. Reusing ``A`` instead would give the owner ``X1 - X2``
(``tests/test_stationary.py`` runs that attack).

A square of the same ``X`` can share the opening: with ``(A, A^2)`` and ``C = A * B``
from one request, ``E = X - A`` is opened to every party (the square needs it
everywhere) and gives both ``X^2 = E^2 + 2 E [A] + [A^2]`` and ``X * W`` (one round, 16
bytes per element: a LayerNorm's sum of squares and its product by gamma).

Cost per product: one round and one message of ``X``'s size to the owner (8 bytes per
element per party, CrypTen's count of a ``reduce``), where a fresh triple opens both
operands to both parties (16 bytes per element of each); the weights' openings move to
the model load. After Mohassel and Zhang, "SecureML" (IEEE S&P 2017), whose offline phase
reuses the mask of a fixed operand across products, and the client-server split of
Delphi (Mishra et al., USENIX Security 2020), where the server, who holds the weights,
alone receives the masked activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = ["FixedMask", "fix_masks", "is_stationary", "square_and_stationary_product", "stationary_product"]

_NEXT_ID = [0]  # ids of this process's fixed masks; a dry run reads them without taking them


@dataclass
class FixedMask:
    """This party's view of one weight's fixed mask: its id (the provider's, which keeps
    the public ``F = W - B``), the owner's rank, and on the owner the weight ``W`` itself
    (ring integers; None on the other parties)."""

    mask_id: int
    owner: int
    weight: torch.Tensor | None


def is_stationary(y: Any) -> bool:
    """Whether ``y`` (a shared tensor) has a fixed mask."""
    return getattr(y, "fixed_mask", None) is not None


def fix_masks(weights: Sequence[Any], owner: int, plaintext: Sequence[torch.Tensor] | None = None) -> None:
    """Give each of ``weights`` (the ``owner``'s, secret-shared) a fixed mask, one round
    for all of them: CrypTensors (every party calls this, in the same order; the owner
    passes the weights' ``plaintext`` values, the others None) or fixed-point emulation
    secrets.

    Raises:
        ValueError: the owner without the plaintext, or a plaintext of another shape.
    """
    from .fixed_point import FixedPointTensor

    if not weights:
        return
    if isinstance(weights[0], FixedPointTensor):
        FixedPointTensor.fix_masks(weights)
        return
    from .backend import crypten, crypten_comm

    shares = [w._tensor for w in weights]
    if shares[0].rank == owner and (plaintext is None or [tuple(p.shape) for p in plaintext] != [
            tuple(s.size()) for s in shares]):
        raise ValueError("the owner fixes its weights' masks with their plaintext values, one per weight, "
                         "of the weights' shapes")
    provider = crypten.mpc.get_default_provider()
    ids = list(range(_NEXT_ID[0], _NEXT_ID[0] + len(shares)))
    if not provider.RECORDS_ONLY:
        _NEXT_ID[0] += len(shares)
    masks = [provider.fixed_mask(s.size(), i) for s, i in zip(shares, ids)]
    flat = torch.cat([(s.share - b).reshape(-1) for s, b in zip(shares, masks)])
    opened = crypten_comm.get().all_reduce(flat)
    offset = 0
    for k, (s, b, i) in enumerate(zip(shares, masks, ids)):
        f = opened[offset : offset + b.numel()].view(b.shape)
        provider.publish_mask(i, f)
        s.fixed_mask = FixedMask(i, owner, s.encoder.encode(plaintext[k]) if s.rank == owner else None)
        offset += b.numel()


def stationary_product(op: str, x: Any, y: Any, **kwargs: Any) -> Any:
    """``x (*) y`` for an ArithmeticSharedTensor ``x`` and a weight ``y`` with a fixed mask
    (the product's shares, before truncation): one message to the weight's owner."""
    from .backend import ArithmeticSharedTensor, crypten, crypten_comm

    mask: FixedMask = y.fixed_mask
    a, c = crypten.mpc.get_default_provider().stationary_triple(x.size(), y.size(), op, mask.mask_id, **kwargs)
    e = crypten_comm.get().reduce(x.share - a, mask.owner)  # dst positional: CrypTen counts args[1]
    share = c  # [C] + [A] (*) F, from the provider
    if x.rank == mask.owner:
        share = share + getattr(torch, op)(e, mask.weight, **kwargs)
    return ArithmeticSharedTensor.from_shares(share, precision=0)


def square_and_stationary_product(x: Any, y: Any) -> tuple[Any, Any]:
    """``x^2`` and ``x * y`` (broadcast) for an ArithmeticSharedTensor ``x`` and a weight
    ``y`` with a fixed mask, from one opening of ``x`` to every party (the shares, before
    truncation)."""
    from .backend import ArithmeticSharedTensor, crypten, crypten_comm

    mask: FixedMask = y.fixed_mask
    a, a2, c = crypten.mpc.get_default_provider().square_stationary_triple(x.size(), y.size(), mask.mask_id)
    e = crypten_comm.get().all_reduce(x.share - a)
    square = a2 + 2 * e * a
    product = c  # [C] + [A] * F, from the provider
    if x.rank == 0:
        square = square + e * e
    if x.rank == mask.owner:
        product = product + e * mask.weight
    return (ArithmeticSharedTensor.from_shares(square, precision=0),
            ArithmeticSharedTensor.from_shares(product, precision=0))
