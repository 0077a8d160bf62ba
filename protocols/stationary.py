"""Weight-stationary Beaver masks: the owner's weights are masked once per model load.

A Beaver product of a secret activation ``X`` by a secret weight ``W`` opens ``X - A``
and ``W - B`` and uses shares of a triple (A, B, C = A (*) B) (``(*)``: the elementwise
product, a matmul or a conv2d). The weight is the same for every image, so its mask need
not be fresh: at load, each party takes a share of a uniform mask ``B`` from the
correlated-randomness provider and ``F = W - B`` is opened once, for every weight in one
round. Each product then asks only for a fresh ``A`` and ``C = A (*) B`` for that fixed
``B`` and opens ``E = X - A``:

    X (*) W = E (*) F + E (*) [B] + [A] (*) F + [C]    (E (*) F added by party 0 once)

Security: ``F`` is ``W`` masked by a uniform ``B`` that is used for nothing else, and
``E`` is ``X`` masked by a fresh uniform ``A``, so the openings are uniform and
independent whatever the secrets (the same argument as for a Beaver triple; the fixed
``B`` only ever enters the shares, never another opening). Reusing ``A`` instead would
reveal ``X1 - X2`` (``tests/test_stationary.py`` runs that attack).

Cost per product: one round and the opening of ``X`` only (16 bytes per element per
party, CrypTen's count), where a fresh triple also opens the weight; the weights' openings
move to the model load. After Mohassel and Zhang, "SecureML" (IEEE S&P 2017), whose
offline phase reuses the mask of a fixed operand across products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = ["FixedMask", "fix_masks", "is_stationary", "stationary_product"]

_NEXT_ID = [0]  # ids of this process's fixed masks; a dry run reads them without taking them


@dataclass
class FixedMask:
    """This party's view of one weight's fixed mask: its id (the provider's), the public
    ``F = W - B``, and what the opened ``E`` multiplies: its share of ``B``, plus ``F`` on
    party 0 (``E (*) [B] + E (*) F`` in one product)."""

    mask_id: int
    f: torch.Tensor
    e_factor: torch.Tensor


def is_stationary(y: Any) -> bool:
    """Whether ``y`` (a shared tensor) has a fixed mask."""
    return getattr(y, "fixed_mask", None) is not None


def fix_masks(weights: Sequence[Any]) -> None:
    """Give each of ``weights`` a fixed mask (one round for all of them): CrypTensors
    (every party calls this, in the same order) or fixed-point emulation secrets."""
    from .fixed_point import FixedPointTensor

    if not weights:
        return
    if isinstance(weights[0], FixedPointTensor):
        FixedPointTensor.fix_masks(weights)
        return
    from .backend import crypten, crypten_comm

    provider = crypten.mpc.get_default_provider()
    shares = [w._tensor for w in weights]
    ids = list(range(_NEXT_ID[0], _NEXT_ID[0] + len(shares)))
    if not provider.RECORDS_ONLY:
        _NEXT_ID[0] += len(shares)
    masks = [provider.fixed_mask(s.size(), i) for s, i in zip(shares, ids)]
    flat = torch.cat([(s.share - b).reshape(-1) for s, b in zip(shares, masks)])
    opened = crypten_comm.get().all_reduce(flat)
    offset = 0
    for s, b, i in zip(shares, masks, ids):
        f = opened[offset : offset + b.numel()].view(b.shape)
        s.fixed_mask = FixedMask(i, f, b + f if s.rank == 0 else b)
        offset += b.numel()


def stationary_product(op: str, x: Any, y: Any, **kwargs: Any) -> Any:
    """``x (*) y`` for an ArithmeticSharedTensor ``x`` and a weight ``y`` with a fixed mask
    (the Beaver product's shares, before truncation)."""
    from .backend import ArithmeticSharedTensor, crypten, crypten_comm

    mask: FixedMask = y.fixed_mask
    a, c = crypten.mpc.get_default_provider().stationary_triple(x.size(), y.size(), op, mask.mask_id, **kwargs)
    e = crypten_comm.get().all_reduce(x.share - a)
    fn = getattr(torch, op)
    return ArithmeticSharedTensor.from_shares(c + fn(e, mask.e_factor, **kwargs) + fn(a, mask.f, **kwargs),
                                              precision=0)
