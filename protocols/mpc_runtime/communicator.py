"""CrypTen's communicator made stricter and faster between two parties.

* **No pickles**: ``send_obj``/``recv_obj``/``broadcast_obj`` raise; peers exchange
  fixed-size integer tensors only.
* **One message per opening**: between two parties ``all_reduce`` (an opening) is one
  simultaneous exchange and ``reduce`` (a reveal to one party) one message, instead of
  gloo's two dependent steps; bytes and rounds are counted as before (CrypTen's
  logging decorator).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from ..backend import DistributedCommunicator, count_communication

__all__ = ["all_reduce", "reduce"]


def _no_objects(self, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError("secvit parties exchange fixed-size integer tensors only; pickled objects are refused")


for _name in ("send_obj", "recv_obj", "broadcast_obj"):
    setattr(DistributedCommunicator, _name, _no_objects)

_COMBINE = {dist.ReduceOp.SUM: torch.add, dist.ReduceOp.BXOR: torch.bitwise_xor}
_crypten_all_reduce, _crypten_reduce = DistributedCommunicator.all_reduce, DistributedCommunicator.reduce


def _two_party(self: DistributedCommunicator, op: Any) -> bool:
    return self.get_world_size() == 2 and op in _COMBINE


def _exchange(self: DistributedCommunicator, tensors: list[torch.Tensor], op: Any, dst: int | None) -> list[torch.Tensor]:
    """Two parties open ``tensors`` in one simultaneous exchange (each sends its shares once
    and receives the peer's), or, with ``dst``, the other party sends to ``dst`` alone."""
    peer = 1 - self.get_rank()
    mine = [t.contiguous() for t in tensors]
    theirs = [torch.empty_like(t) for t in mine]
    sending = dst is None or dst == peer
    receiving = dst is None or dst == self.get_rank()
    works = [dist.isend(t, peer, group=self.main_group) for t in mine] if sending else []
    works += [dist.irecv(t, peer, group=self.main_group) for t in theirs] if receiving else []
    for work in works:
        work.wait()
    return [_COMBINE[op](a, b) for a, b in zip(mine, theirs)] if receiving else mine


@count_communication
def all_reduce(self: DistributedCommunicator, input: Any, op: Any = dist.ReduceOp.SUM, batched: bool = False) -> Any:
    """CrypTen's all_reduce; between two parties one exchange instead of gloo's two steps."""
    if not _two_party(self, op):
        return _crypten_all_reduce.__wrapped__(self, input, op=op, batched=batched)
    out = _exchange(self, list(input) if batched else [input], op, None)
    return out if batched else out[0]


@count_communication
def reduce(self: DistributedCommunicator, input: Any, dst: int, op: Any = dist.ReduceOp.SUM, batched: bool = False) -> Any:
    """CrypTen's reduce; between two parties the peer's one message to ``dst``."""
    if not _two_party(self, op):
        return _crypten_reduce.__wrapped__(self, input, dst, op=op, batched=batched)
    out = _exchange(self, list(input) if batched else [input], op, dst)
    return out if batched else out[0]


DistributedCommunicator.all_reduce, DistributedCommunicator.reduce = all_reduce, reduce
