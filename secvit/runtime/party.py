"""One party of a secure session, as its own OS process.

:func:`run_party` joins the rendezvous, starts the :class:`~.watchdog.Watchdog`, runs the
party's work, and leaves in order (rank 0 waits for every party to finish before it
closes the store it hosts). :func:`run_dealer` runs the dealer (:mod:`.dealer`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

from protocols import backend

from . import dealer
from .roles import role_name
from .watchdog import Watchdog

__all__ = ["PartyContext", "RendezvousError", "check_port_free", "run_dealer", "run_party"]


class RendezvousError(RuntimeError):
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


def _host_port(rendezvous: str) -> tuple[str, int]:
    url = urlparse(rendezvous)
    if url.scheme != "tcp" or not url.hostname or not url.port:
        raise RendezvousError(f"rendezvous {rendezvous!r}: expected tcp://HOST:PORT")
    return url.hostname, url.port


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`RendezvousError` if ``host:port`` cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise RendezvousError(f"rendezvous port {port} on {host} is already in use ({e.strerror})") from None


def _join(settings: backend.MPCSettings, rank: int, world_size: int, rendezvous: str) -> None:
    host, port = _host_port(rendezvous)
    if rank == 0:
        check_port_free(host, port)
    try:
        backend.init(settings, rank, world_size, rendezvous)
    except Exception as e:  # torch raises DistNetworkError / DistStoreError / RuntimeError here
        raise RendezvousError(f"{role_name(rank, world_size)} could not join {rendezvous}: {e}".splitlines()[0]) from None


def _computing_ranks(world_size: int) -> list[int]:
    return list(range(world_size))


def _watched(rank: int, settings: backend.MPCSettings, world_size: int) -> list[int]:
    ranks = _computing_ranks(world_size) + ([world_size] if settings.provider == "dealer" else [])
    return [r for r in ranks if r != rank]


def run_party(
    work: Callable[[PartyContext], dict[str, Any]],
    rank: int,
    world_size: int,
    rendezvous: str,
    settings: backend.MPCSettings,
) -> dict[str, Any]:
    """Run ``work`` as party ``rank``; returns its result.

    Raises:
        RendezvousError: the session could not be formed.
    """
    _join(settings, rank, world_size, rendezvous)
    watchdog = Watchdog(rank, world_size, _watched(rank, settings, world_size)).start()
    try:
        result = work(PartyContext(rank, world_size, settings))
    except BaseException as e:
        watchdog.post_error(f"{type(e).__name__}: {e}")
        if isinstance(e, (RuntimeError, OSError)):
            watchdog.join(grace_s=watchdog.stale_s + 3)  # a broken link: let the watchdog name the lost peer
        raise
    if rank == 0:
        backend.stop_dealer()
    watchdog.finish(wait_for=_watched(rank, settings, world_size) if rank == 0 else [])  # rank 0 hosts the store
    backend.shutdown()
    return result


def run_dealer(world_size: int, rendezvous: str, settings: backend.MPCSettings) -> None:
    """Run the dealer (rank ``world_size``) with a watchdog on the computing parties.

    Raises:
        RendezvousError: the session could not be formed.
    """
    _host_port(rendezvous)
    try:
        streams = backend.join_as_dealer(settings, world_size, rendezvous)
    except Exception as e:  # torch raises DistNetworkError / DistStoreError / RuntimeError here
        raise RendezvousError(f"{role_name(world_size, world_size)} could not join {rendezvous}: {e}".splitlines()[0]) from None
    watchdog = Watchdog(world_size, world_size, _computing_ranks(world_size)).start()
    try:
        dealer.serve(streams, settings, world_size)
    except BaseException as e:
        watchdog.post_error(f"{type(e).__name__}: {e}")
        raise
    watchdog.finish(wait_for=[])
    backend.shutdown()
