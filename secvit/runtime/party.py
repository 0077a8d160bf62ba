"""One party of a secure session, as its own OS process.

:func:`run_party` joins the session's mesh of authenticated channels, starts the
:class:`~.watchdog.Watchdog`, runs the party's work, and leaves in order (every process
waits until all its peers are done before it closes a channel). :func:`run_dealer` runs
the dealer (:mod:`.dealer`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Callable

from protocols import backend
from protocols.mpc_runtime.channels import PeerClosed

from . import dealer
from .roles import role_name
from .watchdog import Watchdog
from ..errors import SecvitError

__all__ = ["PartyContext", "RendezvousError", "check_port_free", "run_dealer", "run_party"]


class RendezvousError(SecvitError, RuntimeError):
    """The parties could not meet (bad address, port in use, peer never came)."""


@dataclass(frozen=True)
class PartyContext:
    """What a party's work function knows about its session."""

    rank: int
    world_size: int
    settings: backend.MPCSettings

    @property
    def name(self) -> str:
        return role_name(self.rank, self.world_size)


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`RendezvousError` if ``host:port`` cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise RendezvousError(f"rendezvous port {port} on {host} is already in use ({e.strerror})") from None


def _joined(join: Callable[[], Any], name: str) -> Any:
    """Run ``join``; a session that cannot form raises :class:`RendezvousError` (one line)."""
    try:
        return join()
    except (backend.MeshError, backend.KeyringError, backend.ChannelError) as e:
        raise RendezvousError(str(e).splitlines()[0]) from None
    except OSError as e:
        raise RendezvousError(f"{name} could not join the session: {e}".splitlines()[0]) from None


def _computing_ranks(world_size: int) -> list[int]:
    return list(range(world_size))


def _watched(rank: int, settings: backend.MPCSettings, world_size: int) -> list[int]:
    ranks = _computing_ranks(world_size) + ([world_size] if settings.provider == "dealer" else [])
    return [r for r in ranks if r != rank]


def run_party(
    work: Callable[[PartyContext], dict[str, Any]],
    rank: int,
    world_size: int,
    endpoint: backend.Endpoint,
    settings: backend.MPCSettings,
) -> dict[str, Any]:
    """Run ``work`` as party ``rank``; returns its result.

    Raises:
        RendezvousError: the session could not be formed.
    """
    _joined(lambda: backend.init(settings, rank, world_size, endpoint), role_name(rank, world_size))
    watchdog = Watchdog(rank, world_size, _watched(rank, settings, world_size), backend.control_channels()).start()
    try:
        result = work(PartyContext(rank, world_size, settings))
    except BaseException as e:
        watchdog.post_error(f"{type(e).__name__}: {e}")
        if isinstance(e, (PeerClosed, OSError)):
            watchdog.join(grace_s=watchdog.stale_s + 3)  # a broken link: let the watchdog name the lost peer
        raise
    if rank == 0:
        backend.stop_dealer()
    watchdog.finish()
    backend.shutdown()
    return result


def run_dealer(world_size: int, endpoint: backend.Endpoint, settings: backend.MPCSettings) -> None:
    """Run the dealer (rank ``world_size``) with a watchdog on the computing parties.

    Raises:
        RendezvousError: the session could not be formed.
    """
    streams = _joined(lambda: backend.join_as_dealer(settings, world_size, endpoint), role_name(world_size, world_size))
    watchdog = Watchdog(world_size, world_size, _computing_ranks(world_size), backend.control_channels()).start()
    try:
        dealer.serve(streams, settings, world_size)
    except BaseException as e:
        watchdog.post_error(f"{type(e).__name__}: {e}")
        raise
    watchdog.finish()
    backend.shutdown()
