"""Keyed randomness in place of CrypTen's ``torch.Generator`` (MT19937).

Every function CrypTen draws shares, masks, triples or bits with is replaced in every
module that imported it; the draws come from :class:`~protocols.randomness.KeyedStream`
(AES-128-CTR) and a generator that is not one raises. :func:`agree_party_keys` (also run
by ``crypten.init``) agrees the session's keys over the communicator, i.e. the session's
authenticated, encrypted channels.

``SECVIT_KEYLOG=PATH`` (like TLS's ``SSLKEYLOGFILE``) appends every key that crossed a
channel to ``PATH`` in hex: a debugging aid that gives away the session's secrets, used
by the capture test to search the wire for them.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..providers import ZeroStream
from ..randomness import KeyedStream, key_from_tensor, key_to_tensor, new_key
from ..backend import CPU, RANDOMNESS_MODULES, crypten, crypten_comm

__all__ = ["STREAMS", "agree_party_keys", "drawn_bytes", "install_streams", "log_key"]

STREAMS = ("prev", "next", "local", "global")


def _stream_of(generator: Any, kwargs: dict[str, Any]) -> Any:
    if generator is None:
        generator = crypten.generators["local"].get(torch.device(kwargs.get("device") or "cpu"))
    if not isinstance(generator, (KeyedStream, ZeroStream)):
        raise TypeError(f"secvit draws shares from keyed streams only, got {type(generator).__name__} "
                        "(was the session initialised by protocols.backend?)")
    return generator


def _ring_element(size, ring_size: int = 2**64, generator: Any = None, **kwargs: Any) -> torch.Tensor:
    if ring_size != 2**64:
        raise ValueError(f"only the ring 2^64 is supported, got {ring_size}")
    return _stream_of(generator, kwargs).ring(size)


def _kbit_tensor(size, bitlength: int | None = None, generator: Any = None, **kwargs: Any) -> torch.Tensor:
    return _stream_of(generator, kwargs).bits(size, 64 if bitlength is None else bitlength)


for _module in RANDOMNESS_MODULES:
    for _name, _fn in (("generate_random_ring_element", _ring_element), ("generate_kbit_random_tensor", _kbit_tensor)):
        if hasattr(_module, _name):
            setattr(_module, _name, _fn)


def install_streams(streams: dict[str, Any]) -> None:
    """Make ``streams`` (one per name of :data:`STREAMS`) CrypTen's generators."""
    for name in STREAMS:
        crypten.generators[name] = {CPU: streams[name]}


def agree_party_keys() -> None:
    """Fresh keys for this session: ``next`` goes to the next rank (it is that rank's
    ``prev``), ``global`` comes from rank 0, ``local`` stays here."""
    comm = crypten_comm.get()
    world_size, rank = comm.get_world_size(), comm.get_rank()
    keys = {"next": new_key(), "local": new_key()}
    if world_size >= 2:
        prev = torch.zeros(2, dtype=torch.int64)
        sent = comm.isend(key_to_tensor(keys["next"]), (rank + 1) % world_size)
        received = comm.irecv(prev, src=(rank - 1) % world_size)
        sent.wait()
        received.wait()
        keys["prev"] = key_from_tensor(prev)
    else:
        keys["prev"] = keys["next"]
    keys["global"] = key_from_tensor(comm.broadcast(key_to_tensor(new_key()), 0))
    for name in ("next", "prev", "global"):
        log_key(name, keys[name])
    install_streams({name: KeyedStream(keys[name]) for name in STREAMS})


def log_key(name: str, key: bytes) -> None:
    """Append ``key`` to the file ``SECVIT_KEYLOG`` names, if it is set (debugging only)."""
    path = os.environ.get("SECVIT_KEYLOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {name} {key.hex()}\n")


def drawn_bytes() -> int:
    """Bytes drawn so far from this party's keyed streams with the other parties."""
    return sum(s.drawn_bytes for name in STREAMS for s in crypten.generators[name].values())


crypten._setup_prng = agree_party_keys  # crypten.init() agrees keyed streams, not MT19937 seeds
