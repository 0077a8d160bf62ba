"""CrypTen's communicator interface on the session's authenticated channels.

:class:`ChannelCommunicator` implements what CrypTen calls on ``crypten.communicator.get()``
(send/recv, isend/irecv, broadcast, all_reduce, reduce, gather, all_gather, scatter,
barrier, counters) over the computing parties' ``data`` channels of a
:class:`~protocols.mpc_runtime.mesh.Mesh`. Every collective is one :func:`exchange`: each
party sends what it owes and receives what it is owed at once, so an opening between
two parties (``all_reduce``) is one simultaneous exchange, one one-way delay, and a
reveal to one party (``reduce``) one message. Bytes and rounds are counted by CrypTen's
own logging decorator, exactly as before.

:func:`install` makes it the communicator CrypTen uses; :func:`uninstall` gives CrypTen
back its own (gloo), which only the benchmarks' baseline still runs on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed import ReduceOp

from ..backend import crypten_comm
from ..backend import count_communication as counted
from .channels import transfer
from .mesh import Mesh

__all__ = ["ChannelCommunicator", "install", "uninstall"]

_COMBINE = {ReduceOp.SUM: torch.add, ReduceOp.BXOR: torch.bitwise_xor}


class _Work:
    """What ``isend``/``irecv`` return: ``wait()`` runs every operation posted so far in
    one exchange."""

    def __init__(self, comm: "ChannelCommunicator"):
        self.comm = comm

    def wait(self) -> None:
        self.comm._flush()

    def is_completed(self) -> bool:
        return not self.comm._posted


class ChannelCommunicator(crypten_comm.Communicator):
    """The computing parties' communicator over authenticated channels.

    Args:
        mesh: This process's channels (ranks ``[0, world_size)`` are computing parties).
        world_size: Computing parties.
    """

    BYTES_PER_ELEMENT = 8
    instance: "ChannelCommunicator | None" = None

    def __init__(self, mesh: Mesh, world_size: int):
        self.mesh, self.world_size, self.rank = mesh, world_size, mesh.rank
        self.peers = [r for r in range(world_size) if r != self.rank]
        self._posted: list[tuple[str, int, torch.Tensor]] = []
        self._name = f"rank{self.rank}"
        self.reset_communication_stats()

    # -- CrypTen's class-level interface
    @classmethod
    def is_initialized(cls) -> bool:
        return cls.instance is not None

    @classmethod
    def get(cls) -> "ChannelCommunicator":
        return cls.instance

    def get_rank(self) -> int:
        return self.rank

    def get_world_size(self) -> int:
        return self.world_size

    def set_name(self, name: str) -> None:
        self._name = name

    def get_name(self) -> str:
        return self._name

    # -- the one primitive
    def swap(self, sends: dict[int, list[torch.Tensor]], receives: dict[int, list[torch.Tensor]]) -> None:
        """Send ``sends[p]`` to each ``p`` and fill ``receives[p]`` from each ``p``, at once."""
        transfer(self.mesh.data, sends, receives, self.mesh.timeout_s)

    def _flush(self) -> None:
        posted, self._posted = self._posted, []
        sends: dict[int, list[torch.Tensor]] = {}
        receives: dict[int, list[torch.Tensor]] = {}
        for kind, peer, t in posted:
            (sends if kind == "send" else receives).setdefault(peer, []).append(t)
        self.swap(sends, receives)

    def _empty(self, like: torch.Tensor) -> torch.Tensor:
        return torch.empty(like.shape, dtype=like.dtype)

    # -- point to point
    @counted
    def send(self, tensor: torch.Tensor, dst: int) -> None:
        self.swap({dst: [tensor]}, {})

    @counted
    def recv(self, tensor: torch.Tensor, src: int | None = None) -> torch.Tensor:
        if src is None:
            raise ValueError("secvit's communicator receives from a named party only")
        result = self._empty(tensor)
        self.swap({}, {src: [result]})
        return result

    @counted
    def isend(self, tensor: torch.Tensor, dst: int) -> _Work:
        self._posted.append(("send", dst, tensor))
        return _Work(self)

    @counted
    def irecv(self, tensor: torch.Tensor, src: int | None = None) -> _Work:
        if src is None or not tensor.is_contiguous():
            raise ValueError("irecv needs a named source and a contiguous tensor to fill")
        self._posted.append(("recv", src, tensor))
        return _Work(self)

    # -- collectives (each one exchange)
    @counted
    def all_reduce(self, input: Any, op: Any = ReduceOp.SUM, batched: bool = False) -> Any:
        return self._reduce(input, op, batched, {p: None for p in self.peers})

    @counted
    def reduce(self, input: Any, dst: int, op: Any = ReduceOp.SUM, batched: bool = False) -> Any:
        if self.rank != dst:
            self.swap({dst: list(input) if batched else [input]}, {})
            return None
        return self._reduce(input, op, batched, {})

    def _reduce(self, input: Any, op: Any, batched: bool, sends: dict[int, None]) -> Any:
        """Combine this party's tensors with every peer's (sending its own to ``sends``)."""
        if op not in _COMBINE:
            raise ValueError(f"reduction {op} is not supported (sum and xor are)")
        mine = list(input) if batched else [input]
        theirs = {p: [self._empty(t) for t in mine] for p in self.peers}
        self.swap({p: mine for p in sends}, theirs)
        out = []
        for i, t in enumerate(mine):
            for p in self.peers:  # each combination allocates: the inputs are never written
                t = _COMBINE[op](t, theirs[p][i])
            out.append(t)
        return out if batched else out[0]

    @counted
    def broadcast(self, input: Any, src: int, group: Any = None, batched: bool = False) -> Any:
        tensors = list(input) if batched else [input]
        if self.rank == src:
            self.swap({p: tensors for p in self.peers}, {})
            return input
        received = [self._empty(t) for t in tensors]
        self.swap({}, {src: received})
        for t, r in zip(tensors, received):
            t.data.copy_(r)
        return input

    @counted
    def gather(self, tensor: torch.Tensor, dst: int) -> list[torch.Tensor | None]:
        if self.rank != dst:
            self.swap({dst: [tensor]}, {})
            return [None]
        out = [tensor if r == self.rank else self._empty(tensor) for r in range(self.world_size)]
        self.swap({}, {p: [out[p]] for p in self.peers})
        return out

    @counted
    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        out = [tensor if r == self.rank else self._empty(tensor) for r in range(self.world_size)]
        self.swap({p: [tensor] for p in self.peers}, {p: [out[p]] for p in self.peers})
        return out

    @counted
    def scatter(self, scatter_list: list[torch.Tensor], src: int, size: Any = None, device: Any = None) -> torch.Tensor:
        if self.rank == src:
            self.swap({p: [scatter_list[p]] for p in self.peers}, {})
            return scatter_list[self.rank]
        like = scatter_list[self.rank] if size is None else torch.empty(size, dtype=torch.long)
        out = self._empty(like)
        self.swap({}, {src: [out]})
        return out

    @counted
    def barrier(self) -> None:
        empty = torch.empty(0, dtype=torch.int64)
        self.swap({p: [empty] for p in self.peers}, {p: [self._empty(empty)] for p in self.peers})

    def send_obj(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secvit parties exchange fixed-size integer tensors only; pickled objects are refused")

    recv_obj = broadcast_obj = send_obj


_CRYPTEN = {name: getattr(crypten_comm, name) for name in ("get", "is_initialized", "uninit")}


def install(mesh: Mesh, world_size: int) -> ChannelCommunicator:
    """Make a :class:`ChannelCommunicator` on ``mesh`` the one CrypTen uses."""
    ChannelCommunicator.instance = ChannelCommunicator(mesh, world_size)
    crypten_comm.get = ChannelCommunicator.get
    crypten_comm.is_initialized = ChannelCommunicator.is_initialized
    crypten_comm.uninit = uninstall
    return ChannelCommunicator.instance


def uninstall() -> None:
    """Give CrypTen back its own communicator (the session closes the channels)."""
    ChannelCommunicator.instance = None
    for name, fn in _CRYPTEN.items():
        setattr(crypten_comm, name, fn)
