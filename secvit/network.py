"""Network profiles and the latency model:
compute + rounds x RTT / 2 + (bytes / 2) / bandwidth.

Profiles are YAML files in ``configs/network/`` (``lan``, ``wan``) or any path with the
keys ``name``, ``bandwidth_mbps`` and ``rtt_ms``. A party's ``bytes`` (CrypTen's count)
are what it sends and receives; on a full-duplex link the two directions overlap, so
the transfer time is half of them over the bandwidth. A round is one opening: both
parties send their shares at once on secvit's own channels
(:mod:`protocols.mpc_runtime.channel_communicator`), and each waits only for the other's
frame, one one-way delay (:data:`ROUND_TRIPS_PER_ROUND` = 0.5; gloo's ``all_reduce`` took
two dependent exchanges, and a gloo message one round trip, as the receiver first sends
a ready notice). Measured through the delay line on ``wan`` (80 ms RTT): see the
README's estimate-versus-measurement table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .configs import CONFIG_DIR, read_config, shipped
from .errors import SecvitError

__all__ = ["NETWORK_DIR", "ROUND_TRIPS_PER_ROUND", "NetworkError", "NetworkProfile", "load_network", "network_names"]

NETWORK_DIR = CONFIG_DIR / "network"
_KEYS = {"name", "bandwidth_mbps", "rtt_ms"}
ROUND_TRIPS_PER_ROUND = 0.5


class NetworkError(SecvitError, ValueError):
    """A network profile is missing or malformed."""


@dataclass(frozen=True)
class NetworkProfile:
    """A link between two parties."""

    name: str
    bandwidth_mbps: float
    rtt_ms: float

    def components(self, seconds: float, nbytes: int, rounds: int) -> dict[str, float]:
        """``compute``, ``latency`` and ``transfer`` seconds on this link of work measured as
        ``seconds`` (on loopback), ``nbytes`` sent + received by one party and ``rounds``."""
        return {"compute": seconds, "latency": rounds * ROUND_TRIPS_PER_ROUND * self.rtt_ms / 1e3,
                "transfer": (nbytes / 2) * 8 / (self.bandwidth_mbps * 1e6)}

    def estimate(self, seconds: float, nbytes: int, rounds: int) -> float:
        """Estimated seconds: the sum of :meth:`components`."""
        return sum(self.components(seconds, nbytes, rounds).values())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bandwidth_mbps": self.bandwidth_mbps, "rtt_ms": self.rtt_ms}


def network_names() -> list[str]:
    """Names of the shipped profiles."""
    return shipped("network")


def load_network(name_or_path: str) -> NetworkProfile:
    """A shipped profile by name, or a YAML file.

    Raises:
        NetworkError: unknown name, unreadable file, missing or unknown keys, non-positive values.
    """
    path, data = read_config(name_or_path, "network", "network", NetworkError)
    if not isinstance(data, dict) or set(data) != _KEYS:
        raise NetworkError(f"{path}: expected exactly the keys {sorted(_KEYS)}, got {sorted(data or {})}")
    profile = NetworkProfile(str(data["name"]), float(data["bandwidth_mbps"]), float(data["rtt_ms"]))
    if profile.bandwidth_mbps <= 0 or profile.rtt_ms < 0:
        raise NetworkError(f"{path}: bandwidth_mbps must be > 0 and rtt_ms >= 0")
    return profile
