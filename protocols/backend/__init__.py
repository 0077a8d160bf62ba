"""The single import point of CrypTen, with the fixes secvit applies to it.

Everything else in secvit gets crypten from here::

    from protocols.backend import crypten

The package's modules are the only code that touches CrypTen's internals; importing it
applies every fix:

* :mod:`.crypten_import`: CrypTen 0.4.1 imported on current torch; exact fixed-point
  decoding.
* :mod:`.streams`: every ``torch.Generator`` CrypTen draws shares, masks, triples or bits
  from replaced by a keyed AES-128-CTR stream; the session's key agreement.
* :mod:`.communicator`: no pickled objects from peers; one message per opening between
  two parties.
* :mod:`.settings`: :class:`MPCSettings`, the dealer (or, behind an insecure flag, party 0)
  as the provider of correlated randomness, exact truncation by default.
* :mod:`.session`: joining and leaving a session, the dealer's link, counters.
* :mod:`.dry_run`: the requests a computation makes, without running it.
"""

from . import communicator  # noqa: F401  (applies the communicator fixes)
from .crypten_import import cfg, crypten
from .dry_run import dry_run, truncations_of
from .session import (
    DEALER_COMMANDS,
    barrier,
    comm_stats,
    dealer_rank,
    gather_all,
    init,
    join_as_dealer,
    recv_message,
    reset_comm_stats,
    send_message,
    set_threads,
    shutdown,
    stop_dealer,
)
from .settings import MAX_PRECISION, MPCSettings, configure, dealer_provider, random_bytes, truncation_stats

__all__ = [
    "DEALER_COMMANDS",
    "MAX_PRECISION",
    "MPCSettings",
    "barrier",
    "cfg",
    "comm_stats",
    "configure",
    "crypten",
    "dealer_provider",
    "dealer_rank",
    "dry_run",
    "gather_all",
    "init",
    "join_as_dealer",
    "random_bytes",
    "recv_message",
    "reset_comm_stats",
    "send_message",
    "set_threads",
    "shutdown",
    "stop_dealer",
    "truncation_stats",
    "truncations_of",
]
