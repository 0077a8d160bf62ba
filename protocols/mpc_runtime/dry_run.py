"""Dry runs: secure code run without communication or randomness, to list the
correlated values it asks for (the dealer's offline work) and count its truncations."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from ..preprocessing import Request
from ..providers import ZeroStream
from ..backend import CPU, cfg, crypten, crypten_comm
from .settings import RECORDER, truncation_stats
from .streams import STREAMS

__all__ = ["dry_run", "truncations_of"]


class _DryCommunicator:
    """Answers every collective with this party's own tensor, sends nothing."""

    def __init__(self, real: Any):
        self.rank, self.world_size = (real.get_rank(), real.get_world_size()) if real is not None else (0, 2)

    def get_rank(self) -> int:
        return self.rank

    def get_world_size(self) -> int:
        return self.world_size

    @staticmethod
    def all_reduce(input: Any, op: Any = None, batched: bool = False) -> Any:
        return [t.clone() for t in input] if batched else input.clone()

    def reduce(self, input: Any, dst: int, op: Any = None, batched: bool = False) -> Any:
        return self.all_reduce(input, batched=batched)

    @staticmethod
    def broadcast(input: Any, src: int, group: Any = None, batched: bool = False) -> Any:
        return input

    def gather(self, tensor: torch.Tensor, dst: int) -> list[torch.Tensor]:
        return [tensor.clone() for _ in range(self.world_size)]

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return self.gather(tensor, 0)

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"communicator call {name!r} during a dry run")


@contextlib.contextmanager
def dry_run() -> Iterator[list[Request]]:
    """Run secure code without communication or randomness and collect the correlated
    values it asks for (yields the list, filled when the block ends). Values computed
    inside are meaningless; only the sequence of requests is. Works outside a session too
    (as rank 0 of two)."""
    get, streams, provider = crypten_comm.get, dict(crypten.generators), cfg.mpc.provider
    # the session's communicator (secvit's channels or gloo): a party keeps its rank in a dry run
    dry = _DryCommunicator(crypten_comm.get() if crypten_comm.is_initialized() else None)
    crypten_comm.get = lambda: dry
    crypten.generators.update({name: {CPU: ZeroStream()} for name in STREAMS})
    cfg.mpc.provider = RECORDER.NAME
    RECORDER.requests = []
    counted = dict(truncation_stats)
    try:
        yield RECORDER.requests
    finally:
        crypten_comm.get = get
        crypten.generators.update(streams)
        cfg.mpc.provider = provider
        truncation_stats.update(counted)


def truncations_of(fn: Callable[[], Any]) -> tuple[int, int]:
    """How many truncations ``fn`` runs and how many elements they truncate (run dry)."""
    with dry_run():
        before = dict(truncation_stats)
        fn()
        return truncation_stats["calls"] - before["calls"], truncation_stats["elements"] - before["elements"]
