"""Joining, running and leaving a session: the mesh of authenticated channels between
every pair of processes (:mod:`.mesh`), CrypTen's communicator on it
(:mod:`.channel_communicator`), the dealer's framed messages, and counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from ..randomness import KeyedStream, key_from_tensor, key_to_tensor, new_key
from ..backend import crypten_comm
from .channel_communicator import install, uninstall
from .channels import Channel, Frame, transfer
from .keys import Keyring, KeyringError
from .mesh import Mesh, connect_mesh
from .settings import DEALER, MPCSettings, configure
from .streams import agree_party_keys, log_key

__all__ = ["DEALER_COMMANDS", "Endpoint", "barrier", "comm_stats", "control_channels", "dealer_rank", "gather_all",
           "init", "join_as_dealer", "recv_message", "reset_comm_stats", "send_message", "set_threads", "shutdown",
           "stop_dealer"]

DEALER_COMMANDS = {"prepare": 1, "stop": 2, "keys": 3}
_DEALER_WAIT_S = 86400.0  # the dealer waits out a whole online phase; a lost peer is the watchdog's to find
_SESSION: dict[str, Mesh | int] = {}


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
        raise ValueError(f"{url!r}: expected tcp://HOST:PORT or HOST:PORT")
    return parsed.hostname, parsed.port


class Endpoint:
    """Where a process meets the others, and with which keys.

    Args:
        rendezvous: ``tcp://HOST:PORT`` where rank 0 listens.
        keys: This process's key directory (:mod:`.keys`); None runs plain TCP channels
            (insecure; only with ``MPCSettings(channels="plaintext")``).
        listen: ``HOST:PORT`` this process accepts higher ranks on (default: the address
            it reaches rank 0 from, a free port).
        advertise: ``HOST:PORT`` the higher ranks should connect to instead (NAT, relays).
        name: How errors name a rank.
    """

    def __init__(self, rendezvous: str, keys: str | Path | None, listen: str | None = None,
                 advertise: str | None = None, name: Callable[[int], str] | None = None):
        self.rendezvous = _address(rendezvous)
        self.keys = keys
        self.listen = _address(listen) if listen else None
        self.advertise = _address(advertise) if advertise else None
        self.name = name or (lambda r: f"party {r}")

    def mesh(self, settings: MPCSettings, rank: int, total: int) -> Mesh:
        """Form the session's mesh as ``rank`` of ``total`` processes."""
        if (settings.channels == "tls") != (self.keys is not None):
            raise KeyringError("TLS channels need a key directory (--keys DIR; make keys with `secvit keys`)"
                               if self.keys is None else "plaintext channels take no key directory")
        keyring = Keyring.load(self.keys, rank, [r for r in range(total) if r != rank]) if self.keys else None
        return connect_mesh(rank, total, self.rendezvous, keyring, settings.timeout_s, self.listen,
                            self.advertise, self.name)


def _total(settings: MPCSettings, world_size: int) -> int:
    return world_size + (settings.provider == "dealer")


def _start(settings: MPCSettings, rank: int, world_size: int, endpoint: Endpoint) -> Mesh:
    configure(settings)
    mesh = endpoint.mesh(settings, rank, _total(settings, world_size))
    _SESSION.update(mesh=mesh, world_size=world_size)
    if settings.provider == "dealer":
        _SESSION["dealer"] = world_size
    return mesh


def init(settings: MPCSettings, rank: int, world_size: int, endpoint: Endpoint) -> None:
    """Form the mesh, put CrypTen on it, agree keyed streams, and (with a dealer) receive
    this party's stream key from the dealer.

    Args:
        settings: Settings shared by all processes.
        rank: This process's rank in [0, world_size).
        world_size: Number of computing parties (the dealer is not counted).
        endpoint: Where and with which keys to meet the others.
    """
    mesh = _start(settings, rank, world_size, endpoint)
    install(mesh, world_size)
    agree_party_keys()
    if settings.provider == "dealer":
        key = torch.zeros(2, dtype=torch.int64)
        _transfer({}, {world_size: [key]})
        dealer_key = key_from_tensor(key)
        log_key("dealer", dealer_key)
        DEALER.stream = KeyedStream(dealer_key)


def join_as_dealer(settings: MPCSettings, world_size: int, endpoint: Endpoint) -> list[KeyedStream]:
    """Join as the dealer (rank ``world_size``), send each party a fresh stream key, and
    return the dealer's copies of the parties' streams."""
    _start(settings, world_size, world_size, endpoint)
    keys = [new_key() for _ in range(world_size)]
    _transfer({rank: [key_to_tensor(key)] for rank, key in enumerate(keys)}, {})
    return [KeyedStream(k) for k in keys]


def _mesh() -> Mesh:
    if "mesh" not in _SESSION:
        raise RuntimeError("no session: call init() or join_as_dealer() first")
    return _SESSION["mesh"]


def _transfer(sends: dict[int, list[torch.Tensor]], receives: dict[int, list[Frame | torch.Tensor]],
              timeout_s: float | None = None) -> None:
    """Uncounted tensors between any processes of the session (the dealer included)."""
    mesh = _mesh()
    transfer(mesh.data, sends, receives, mesh.timeout_s if timeout_s is None else timeout_s)


def _gloo_group() -> Any | None:
    """CrypTen's own process group where a session runs on its gloo communicator (the
    benchmarks' baseline transport, party 0 dealing), else None."""
    return None if "mesh" in _SESSION else crypten_comm.get().main_group


def send_message(command: str, data: torch.Tensor, dst: int) -> int:
    """Send ``(command, flat int64 data)`` to ``dst`` on the dealer's link (uncounted; on
    CrypTen's gloo group where the session has no channels); returns the bytes sent."""
    flat = data.reshape(-1).to(torch.int64).contiguous()
    header = torch.tensor([DEALER_COMMANDS[command], flat.numel()])
    if (group := _gloo_group()) is not None:
        for part in (header, flat):
            torch.distributed.send(part, dst, group=group)
    else:
        _transfer({dst: [header, flat]}, {}, _DEALER_WAIT_S)
    return 8 * (2 + flat.numel())


def recv_message(src: int, max_elements: int) -> tuple[str, torch.Tensor]:
    """Receive one :func:`send_message` message, refusing unknown commands and sizes
    above ``max_elements`` (before reading them). The dealer waits for the next batch's
    table through a whole online phase: the wait is unbounded here, and the watchdog
    ends it if a peer is lost."""
    header = torch.zeros(2, dtype=torch.int64)
    names = {v: k for k, v in DEALER_COMMANDS.items()}
    if (group := _gloo_group()) is not None:
        torch.distributed.recv(header, src, group=group)
        code, n = header.tolist()
        if code not in names or not 0 <= n <= max_elements:
            raise RuntimeError(f"malformed message from rank {src}: command {code}, {n} elements")
        body = torch.empty(n, dtype=torch.int64)
        torch.distributed.recv(body, src, group=group)
        return names[code], body
    body = Frame("tensor", limit=8 * max_elements)
    _transfer({}, {src: [header, body]}, _DEALER_WAIT_S)
    code, n = header.tolist()
    if code not in names or n * 8 != len(body.payload):
        raise RuntimeError(f"malformed dealer message from rank {src}: command {code}, {n} elements")
    return names[code], torch.frombuffer(body.payload, dtype=torch.int64) if n else torch.zeros(0, dtype=torch.int64)


def dealer_rank() -> int | None:
    """The dealer's rank in this session (None without a dealer)."""
    return _SESSION.get("dealer")


def stop_dealer() -> None:
    """Rank 0 tells the dealer (if any) that the session is over."""
    if dealer_rank() is not None and _mesh().rank == 0:
        send_message("stop", torch.zeros(0, dtype=torch.int64), dealer_rank())


def control_channels() -> dict[int, Channel]:
    """This process's control channels, by peer rank (the watchdog's alone)."""
    return _mesh().control


def shutdown() -> None:
    """Leave the session: close every channel, give CrypTen back its communicator."""
    mesh = _SESSION.get("mesh")
    _SESSION.clear()
    uninstall()
    if mesh is not None:
        mesh.close()


def gather_all(table: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``table`` (same shape and dtype), by rank: the computing parties
    and, in a session with a dealer, the dealer (uncounted: session set-up)."""
    mesh = _mesh()
    out = [table if r == mesh.rank else torch.empty_like(table) for r in range(mesh.total)]
    peers = [r for r in range(mesh.total) if r != mesh.rank]
    _transfer({p: [table] for p in peers}, {p: [out[p]] for p in peers})
    return out


def barrier() -> None:
    """Wait for every computing party (uncounted: it is not part of any protocol)."""
    mesh, empty = _mesh(), torch.zeros(0, dtype=torch.int64)
    peers = [r for r in range(_SESSION["world_size"]) if r != mesh.rank]
    _transfer({p: [empty] for p in peers}, {p: [torch.zeros(0, dtype=torch.int64)] for p in peers})


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
