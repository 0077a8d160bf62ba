"""The single import point of CrypTen, with the compatibility fix it needs on current torch.

PyPI ``crypten==0.4.1`` imports ``torch.onnx._internal.registration`` (for its ONNX model
converter), a module that current torch no longer has. The MPC core never uses it, so a
stand-in module with a ``registry`` attribute is registered under that name before
``import crypten``. ``crypten.nn.from_pytorch`` stays unusable; secvit does not use it.

CrypTen 0.4.1's ``FixedPointEncoder.decode`` floor-divides negative values by
``scale - 1``: a revealed value within ~|x| / 2^16 above a negative integer (e.g. an
encoding of -1.99998) decodes one too low (-2.99998). :func:`_exact_decode` replaces it.

Everything else in secvit gets crypten from here::

    from protocols.backend import crypten
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import sys
import types
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
import torch.distributed as dist


def _install_onnx_registration_standin() -> None:
    name = "torch.onnx._internal.registration"
    try:
        __import__(name)
    except ImportError:
        standin = types.ModuleType(name)
        standin.registry = None  # crypten only reads this attribute at import time
        sys.modules[name] = standin


_install_onnx_registration_standin()

import crypten  # noqa: E402  (must follow the stand-in)
import crypten.communicator as crypten_comm  # noqa: E402
from crypten.config import cfg  # noqa: E402
from crypten.encoder import FixedPointEncoder  # noqa: E402
from crypten.mpc.provider.ttp_provider import TTPServer  # noqa: E402

__all__ = [
    "MPCSettings",
    "TTPServer",
    "cfg",
    "comm_stats",
    "configure",
    "crypten",
    "init",
    "reset_comm_stats",
    "serve_dealer",
    "set_threads",
    "shutdown",
]



def _exact_decode(self: FixedPointEncoder, tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Fixed-point integers to floats: floor quotient and remainder by the scale."""
    if tensor is None or self._scale == 1:
        return None if tensor is None else tensor.data
    quotient = tensor.div(self._scale, rounding_mode="floor")
    return (quotient.float() + (tensor - quotient * self._scale).float() / self._scale).data


FixedPointEncoder.decode = _exact_decode

Provider = Literal["TFP", "TTP"]
_PROVIDERS = {"TFP": "TFP", "TTP": "TTP"}


@dataclass(frozen=True)
class MPCSettings:
    """Arithmetic and protocol settings every party must share.

    Attributes:
        precision_bits: Fractional bits of CrypTen's fixed-point encoding (ring 2^64).
        provider: Beaver-triple source. ``TFP``: party 0 deals (fast, benchmarks only;
            not secure against party 0). ``TTP``: a separate dealer process.
        comm_stats: Count bytes and rounds on the communicator (CrypTen's verbose mode).
        timeout_s: Longest wait for any single message before a party gives up.
    """

    precision_bits: int = 16
    provider: Provider = "TFP"
    comm_stats: bool = True
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.provider not in _PROVIDERS:
            raise ValueError(f"provider must be one of {sorted(_PROVIDERS)}, got {self.provider!r}")
        if not 8 <= self.precision_bits <= 24:
            raise ValueError(f"precision_bits must be in [8, 24], got {self.precision_bits}")


def configure(settings: MPCSettings) -> None:
    """Apply ``settings`` to CrypTen's global config (call before :func:`init`)."""
    cfg.encoder.precision_bits = settings.precision_bits
    cfg.mpc.provider = _PROVIDERS[settings.provider]
    cfg.communicator.verbose = settings.comm_stats


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


def init(settings: MPCSettings, rank: int, world_size: int, rendezvous: str) -> None:
    """Join the parties' process group and initialise CrypTen for this process.

    Args:
        settings: Settings shared by all parties.
        rank: This process's rank in [0, world_size).
        world_size: Number of computing parties (the TTP dealer is not counted).
        rendezvous: ``tcp://HOST:PORT`` (rank 0 listens) or ``file:///path``.
    """
    configure(settings)
    _environment(rank, world_size, rendezvous)
    with _bounded_waits(settings.timeout_s):
        crypten.init()


def serve_dealer(settings: MPCSettings, world_size: int, rendezvous: str) -> None:
    """Run the TTP dealer (rank ``world_size``) until party 0 shuts the session down."""
    configure(settings)
    _environment(world_size, world_size, rendezvous)
    with _bounded_waits(settings.timeout_s):
        TTPServer()


def shutdown() -> None:
    """Leave the process group (tells the TTP dealer to stop when there is one)."""
    if crypten_comm.is_initialized():
        crypten.uninit()


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
