"""Joining, running and leaving a session: the parties' process group, the dealer's link
to them, the few framed messages on that link, and communication counters."""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist

from ..randomness import KeyedStream, key_from_tensor, key_to_tensor, new_key
from ..backend import crypten, crypten_comm
from .settings import DEALER, MPCSettings, configure
from .streams import agree_party_keys

__all__ = ["DEALER_COMMANDS", "barrier", "comm_stats", "dealer_rank", "gather_all", "init", "join_as_dealer",
           "recv_message", "reset_comm_stats", "send_message", "set_threads", "shutdown", "stop_dealer"]

_DEALER_LINK: dict[str, Any] = {}
_DEALER_WAIT = datetime.timedelta(days=1)  # between batches; a lost peer is the watchdog's to find
DEALER_COMMANDS = {"prepare": 1, "stop": 2}


def _environment(rank: int, world_size: int, rendezvous: str) -> None:
    os.environ.update(
        {"DISTRIBUTED_BACKEND": "gloo", "RENDEZVOUS": rendezvous, "WORLD_SIZE": str(world_size), "RANK": str(rank)}
    )


@contextlib.contextmanager
def _bounded_waits(timeout_s: float) -> Iterator[None]:
    """CrypTen calls init_process_group without a timeout (gloo's default: 30 minutes);
    bound every wait so that a lost party is noticed."""
    original = dist.init_process_group
    dist.init_process_group = functools.partial(original, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield
    finally:
        dist.init_process_group = original


def _join(settings: MPCSettings, rank: int, world_size: int, rendezvous: str) -> None:
    configure(settings)
    _environment(rank, world_size, rendezvous)
    dealer = settings.provider == "dealer"
    with _bounded_waits(settings.timeout_s):
        crypten_comm._init(use_threads=False, init_ttp=dealer)
    comm = crypten_comm.get()
    comm.ttp_initialized = False  # CrypTen would pickle a "terminate" message to its own TTP server
    if dealer:
        _DEALER_LINK.update(group=dist.new_group(list(range(world_size + 1)), timeout=_DEALER_WAIT),
                            rank=world_size)


def init(settings: MPCSettings, rank: int, world_size: int, rendezvous: str) -> None:
    """Join the parties' process group, agree keyed streams, and (with a dealer) receive
    this party's stream key from the dealer.

    Args:
        settings: Settings shared by all parties.
        rank: This process's rank in [0, world_size).
        world_size: Number of computing parties (the dealer is not counted).
        rendezvous: ``tcp://HOST:PORT`` (rank 0 listens) or ``file:///path``.
    """
    _join(settings, rank, world_size, rendezvous)
    agree_party_keys()
    if settings.provider == "dealer":
        key = torch.zeros(2, dtype=torch.int64)
        dist.recv(key, src=_DEALER_LINK["rank"], group=_DEALER_LINK["group"])
        DEALER.stream = KeyedStream(key_from_tensor(key))


def join_as_dealer(settings: MPCSettings, world_size: int, rendezvous: str) -> list[KeyedStream]:
    """Join as the dealer (rank ``world_size``), send each party a fresh stream key, and
    return the dealer's copies of the parties' streams."""
    _join(settings, world_size, world_size, rendezvous)
    keys = [new_key() for _ in range(world_size)]
    for rank, key in enumerate(keys):
        dist.send(key_to_tensor(key), dst=rank, group=_DEALER_LINK["group"])
    return [KeyedStream(k) for k in keys]


def send_message(command: str, data: torch.Tensor, dst: int) -> int:
    """Send ``(command, flat int64 data)`` on the dealer's link; returns the bytes sent."""
    flat = data.reshape(-1).to(torch.int64).contiguous()
    dist.send(torch.tensor([DEALER_COMMANDS[command], flat.numel()]), dst=dst, group=_DEALER_LINK["group"])
    if flat.numel():
        dist.send(flat, dst=dst, group=_DEALER_LINK["group"])
    return 8 * (2 + flat.numel())


def recv_message(src: int, max_elements: int) -> tuple[str, torch.Tensor]:
    """Receive one :func:`send_message` message, refusing unknown commands and sizes
    above ``max_elements``."""
    header = torch.zeros(2, dtype=torch.int64)
    dist.recv(header, src=src, group=_DEALER_LINK["group"])
    code, n = header.tolist()
    names = {v: k for k, v in DEALER_COMMANDS.items()}
    if code not in names or not 0 <= n <= max_elements:
        raise RuntimeError(f"malformed dealer message from rank {src}: command {code}, {n} elements")
    data = torch.zeros(n, dtype=torch.int64)
    if n:
        dist.recv(data, src=src, group=_DEALER_LINK["group"])
    return names[code], data


def dealer_rank() -> int | None:
    """The dealer's rank in this session (None without a dealer)."""
    return _DEALER_LINK.get("rank")


def stop_dealer() -> None:
    """Rank 0 tells the dealer (if any) that the session is over."""
    if _DEALER_LINK and dist.get_rank() == 0:
        send_message("stop", torch.zeros(0, dtype=torch.int64), _DEALER_LINK["rank"])


def shutdown() -> None:
    """Leave the session (every process, after rank 0's :func:`stop_dealer`)."""
    if crypten_comm.is_initialized():
        _DEALER_LINK.clear()
        crypten.uninit()


def gather_all(table: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``table`` (same shape and dtype), by rank: the computing parties
    and, in a session with a dealer, the dealer (uncounted: session set-up)."""
    group = _DEALER_LINK["group"] if _DEALER_LINK else crypten_comm.get().main_group
    out = [torch.zeros_like(table) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, table, group=group)
    return out


def barrier() -> None:
    """Wait for every computing party (uncounted: it is not part of any protocol)."""
    dist.barrier(group=crypten_comm.get().main_group)


def comm_stats() -> dict[str, float]:
    """This party's communication so far: ``rounds``, ``bytes`` and ``time`` (seconds)."""
    stats = crypten_comm.get().get_communication_stats()
    return {"rounds": int(stats["rounds"]), "bytes": int(stats["bytes"]), "time": float(stats["time"])}


def reset_comm_stats() -> None:
    """Zero this party's communication counters."""
    crypten_comm.get().reset_communication_stats()


def set_threads(n: int) -> None:
    """Limit torch's intra-op threads of this party process."""
    torch.set_num_threads(n)
