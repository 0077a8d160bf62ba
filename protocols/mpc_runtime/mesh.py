"""The session's mesh: two authenticated channels between every pair of processes.

Process 0 listens at the rendezvous address; every other process connects to it, and to
every lower rank at the address process 0 tells it (its advertised address, or the one
process 0 saw it connect from and the port it listens on). Each pair has a ``data``
channel (the computation, the main thread's) and a ``control`` channel (the watchdog's),
so that no TLS connection is ever used by two threads.

Authentication is by certificate (:class:`~protocols.mpc_runtime.keys.Keyring`): a peer's
rank is the rank its certificate is listed under, never what it claims. A listener that
meets a stranger (no listed certificate, a rank already connected) refuses it with one
line on stderr naming the address and keeps waiting for the real peer; a process that
is refused stops with :class:`MeshError` naming the address.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from .channels import Channel, ChannelError, Frame, exchange
from .keys import Keyring

__all__ = ["KINDS", "Mesh", "MeshError", "connect_mesh"]

KINDS = ("data", "control")
_RETRY_ERRNOS = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET)
_HELLO_LIMIT = 4096
Address = tuple[str, int]


class MeshError(RuntimeError):
    """The mesh could not be formed: a refused certificate, a port in use, a peer that never came."""


def _default_name(rank: int) -> str:
    return f"party {rank}"


@dataclass
class Mesh:
    """This process's channels to every other process of the session, by rank."""

    rank: int
    total: int
    data: dict[int, Channel] = field(default_factory=dict)
    control: dict[int, Channel] = field(default_factory=dict)
    timeout_s: float = 60.0

    def close(self) -> None:
        for channel in [*self.data.values(), *self.control.values()]:
            channel.close()
        self.data.clear()
        self.control.clear()


@dataclass
class _Setup:
    rank: int
    total: int
    keyring: Keyring | None  # None: plain TCP (insecure)
    timeout_s: float
    name: Callable[[int], str]
    deadline: float = 0.0

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise MeshError(f"{self.name(self.rank)}: the session did not form within {self.timeout_s:.0f} s")
        return left

    def wrap(self, sock: socket.socket, server: bool) -> socket.socket:
        if self.keyring is None:
            return sock
        sock.settimeout(self.remaining())
        return self.keyring.context(server).wrap_socket(sock, server_side=server)

    def peer_rank(self, sock: socket.socket, claimed: int) -> int | None:
        if self.keyring is None:
            return claimed
        return self.keyring.rank_of(sock.getpeercert(binary_form=True))


def _send_hello(channel: Channel, setup: _Setup, kind: str, listening: Address | None) -> None:
    hello = {"rank": setup.rank, "total": setup.total, "kind": kind, "listen": listening}
    channel.queue("hello", json.dumps(hello).encode())
    exchange([channel], setup.remaining())


def _recv_json(channel: Channel, tag: str, setup: _Setup) -> dict:
    frame = channel.expect(Frame(tag, limit=_HELLO_LIMIT))
    exchange([channel], setup.remaining())
    try:
        return json.loads(bytes(frame.payload))
    except ValueError:
        raise ChannelError(f"malformed {tag} from {channel.name}") from None


def _refuse(setup: _Setup, address: str, why: str) -> None:
    print(f"secvit: {setup.name(setup.rank)}: refused a connection from {address}: {why}", file=sys.stderr, flush=True)


def _accept(listener: socket.socket, setup: _Setup, wanted: set[tuple[int, str]],
            mesh: Mesh) -> dict[int, Address | None]:
    """Accept until every ``(rank, kind)`` of ``wanted`` is connected; strangers are refused.
    Returns what each peer said it listens on."""
    listens: dict[int, Address | None] = {}
    while wanted:
        listener.settimeout(setup.remaining())
        try:
            sock, (host, port) = listener.accept()
        except socket.timeout:
            continue  # remaining() raises once the deadline is past
        address = f"{host}:{port}"
        try:
            sock = setup.wrap(sock, True)
            channel = Channel(sock, address, address)
            hello = _recv_json(channel, "hello", setup)
            rank = setup.peer_rank(sock, int(hello.get("rank", -1)))
        except (ssl.SSLError, ChannelError, OSError, ValueError) as e:
            _refuse(setup, address, _why(e))
            sock.close()
            continue
        kind = hello.get("kind")
        if rank is None or (rank, kind) not in wanted or hello.get("rank") != rank or hello.get("total") != setup.total:
            _refuse(setup, address, f"certificate of {setup.name(rank) if rank is not None else 'nobody listed'}, "
                                    f"says rank {hello.get('rank')} of {hello.get('total')} ({kind})")
            sock.close()
            continue
        wanted.discard((rank, kind))
        channel.name = f"{setup.name(rank)} at {address}"
        getattr(mesh, kind)[rank] = channel
        if kind == "data":
            listens[rank] = tuple(hello["listen"]) if hello.get("listen") else None
    return listens


def _why(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(e) or "PEER_DID_NOT_RETURN" in str(e):
            return "its certificate is not one this party lists"
        return f"TLS: {e.reason or e}"
    return str(e) or type(e).__name__


def _connect(setup: _Setup, rank: int, address: Address, kind: str, listening: Address | None = None) -> Channel:
    """Connect to ``rank`` at ``address`` and say hello, retrying while nobody listens yet
    or the connection drops before the handshake ends (a forwarder whose target is not up)."""
    where = f"{address[0]}:{address[1]}"
    while True:
        try:
            sock = socket.create_connection(address, timeout=min(5.0, setup.remaining()))
        except OSError as e:  # nobody listens yet (refused, unreachable, timed out): retry until the deadline
            if not isinstance(e, socket.timeout) and e.errno not in _RETRY_ERRNOS:
                raise MeshError(f"{setup.name(setup.rank)} cannot reach {where}: {e.strerror or e}") from None
            time.sleep(0.1)
            setup.remaining()
            continue
        try:
            sock = setup.wrap(sock, False)
            break
        except (ssl.SSLEOFError, ConnectionError, socket.timeout) as e:
            sock.close()
            if isinstance(e, socket.timeout):
                setup.remaining()
            time.sleep(0.1)
        except ssl.SSLError as e:
            sock.close()
            raise MeshError(f"{setup.name(setup.rank)} refused {where}: {_why(e)}") from None
    peer = setup.peer_rank(sock, rank)
    if peer != rank:
        sock.close()
        raise MeshError(f"{setup.name(setup.rank)} refused {where}: it presents the certificate of "
                        f"{setup.name(peer) if peer is not None else 'nobody listed'}, not {setup.name(rank)}'s")
    channel = Channel(sock, f"{setup.name(rank)} at {where}", where)
    try:
        _send_hello(channel, setup, kind, listening)
    except ChannelError as e:
        raise MeshError(f"{setup.name(setup.rank)}: {where} ended the connection during set-up (did it refuse this "
                        f"party's certificate?): {e}") from None
    return channel


def _route_to(address: Address) -> str:
    """This host's address on the route to ``address`` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return probe.getsockname()[0]


def _listen(address: Address, setup: _Setup) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise MeshError(f"{setup.name(setup.rank)} cannot listen on {address[0]}:{address[1]}: "
                        f"{'port already in use' if e.errno == errno.EADDRINUSE else e.strerror}") from None
    sock.listen(2 * setup.total)
    return sock


def connect_mesh(rank: int, total: int, rendezvous: Address, keyring: Keyring | None, timeout_s: float,
                 listen: Address | None = None, advertise: Address | None = None,
                 name: Callable[[int], str] = _default_name) -> Mesh:
    """Form the session's mesh (every process calls this).

    Args:
        rank: This process's rank in [0, total).
        total: Processes in the session (computing parties and the dealer, if any).
        rendezvous: Where process 0 listens.
        keyring: This process's key and its peers' certificates; None runs plain TCP
            (insecure: anyone on the path reads everything).
        timeout_s: The longest the whole set-up may take.
        listen: Where this process accepts higher ranks (default: the address it reaches
            process 0 from, any free port). Process 0 listens at ``rendezvous``.
        advertise: The address higher ranks should use for this process (behind NAT or a
            relay), instead of ``listen``.
        name: How errors name a rank.

    Raises:
        MeshError: a certificate refused, a port in use, a peer that never came.
    """
    setup = _Setup(rank, total, keyring, timeout_s, name, time.monotonic() + timeout_s)
    mesh = Mesh(rank, total, timeout_s=timeout_s)
    try:
        if rank == 0:
            _form_as_first(setup, mesh, rendezvous)
        else:
            _form_as_peer(setup, mesh, rendezvous, listen, advertise)
    except (ChannelError, OSError) as e:
        mesh.close()
        raise MeshError(f"{name(rank)}: {e}") from None
    except BaseException:
        mesh.close()
        raise
    return mesh


def _form_as_first(setup: _Setup, mesh: Mesh, rendezvous: Address) -> None:
    listener = _listen(rendezvous, setup)
    try:
        listens = _accept(listener, setup, {(r, k) for r in range(1, setup.total) for k in KINDS}, mesh)
    finally:
        listener.close()
    table = {}
    for rank, said in listens.items():
        if said is not None:
            host, port = said
            table[str(rank)] = [mesh.data[rank].address.rsplit(":", 1)[0] if host in ("", "0.0.0.0") else host, port]
    for channel in mesh.data.values():
        channel.queue("table", json.dumps(table).encode())
    exchange(mesh.data.values(), setup.remaining())


def _form_as_peer(setup: _Setup, mesh: Mesh, rendezvous: Address, listen: Address | None,
                  advertise: Address | None) -> None:
    higher = range(setup.rank + 1, setup.total)
    listener, said = None, None
    if higher:
        local = listen[0] if listen else _route_to(rendezvous)
        listener = _listen(listen or (local, 0), setup)
        said = advertise or (local, listener.getsockname()[1])
    try:
        for kind in KINDS:
            getattr(mesh, kind)[0] = _connect(setup, 0, rendezvous, kind, said)
        try:
            table = _recv_json(mesh.data[0], "table", setup)
        except ChannelError as e:
            raise MeshError(f"{setup.name(setup.rank)}: {e} during set-up (did it refuse this party's "
                            "certificate?)") from None
        for lower in range(1, setup.rank):
            if str(lower) not in table:
                raise MeshError(f"{setup.name(setup.rank)}: party 0 sent no address for {setup.name(lower)}")
            host, port = table[str(lower)]
            for kind in KINDS:
                getattr(mesh, kind)[lower] = _connect(setup, lower, (host, int(port)), kind)
        if listener is not None:
            _accept(listener, setup, {(r, k) for r in higher for k in KINDS}, mesh)
    finally:
        if listener is not None:
            listener.close()
