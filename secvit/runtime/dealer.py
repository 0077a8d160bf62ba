"""The dealer and the offline phase: every correlated value of a forward pass is prepared
before the client's batch is shared, so the online phase waits on nothing from the dealer.

The requests are data-independent (shapes are public): each party runs the plan once per
batch shape without communication or randomness (:func:`protocols.backend.dry_run`);
party 0 sends the request table to the dealer as an int64 tensor, and receives its corrections
(:func:`protocols.preprocessing.dealer_corrections`). Party 1 needs nothing from the
dealer online beyond its stream key: it reads its shares from that stream, and offline
only the correction words of comparison keys (:mod:`protocols.dcf`), common to both keys.
Both run the dry run (cached per shape) and compute the stream they will read ahead,
checking every online request against the table.

What each process learns: the dealer sees only the request table (shapes, which the
architecture fixes anyway) and never an opened value; party 0's corrections and party
1's stream are uniform to their holder, and a comparison key (correction words and the
holder's own root seed) is pseudo-random without the other party's seed
(``tests/test_dcf.py`` recovers the compared value from one key where that seed is
known, and not from secvit's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from protocols import backend
from protocols.randomness import KeyedStream
from protocols.preprocessing import correction_numel, dealer_corrections, dealt_numel
from protocols.requests import MAX_REQUESTS, WIDTH, Request, decode, encode

from .agreement import check_agreement, versions
from .roles import OWNER

__all__ = ["OfflinePhase", "serve"]


def serve(streams: list[KeyedStream], settings: backend.MPCSettings, world_size: int,
          log: Callable[[str], None] = print) -> None:
    """Serve party 0's requests until it says stop (``streams``: the dealer's copies of
    the parties' streams, from :func:`protocols.backend.join_as_dealer`)."""
    check_agreement({"settings": settings.shared, "versions": versions()}, backend.gather_all, world_size)
    log(f"dealer: keys sent to {world_size} parties, settings agreed")
    masks: dict[int, torch.Tensor] = {}  # the weights' fixed masks (protocols.stationary), for the session
    while True:
        command, data = backend.recv_message(OWNER, MAX_REQUESTS * WIDTH)
        if command == "stop":
            break
        if data.numel() % WIDTH:
            raise RuntimeError(f"request table of {data.numel()} elements is not a whole number of rows")
        requests = decode(data.view(-1, WIDTH))
        began = time.perf_counter()
        flat = torch.empty(sum(correction_numel(r) for r in requests), dtype=torch.int64)
        keys = torch.empty(sum(dealt_numel(r) for r in requests), dtype=torch.int64)
        offset = dealt_offset = 0
        for correction, dealt in dealer_corrections(requests, streams, masks):  # filled in place: one batch at a time
            flat[offset : offset + correction.numel()] = correction
            keys[dealt_offset : dealt_offset + dealt.numel()] = dealt
            offset += correction.numel()
            dealt_offset += dealt.numel()
        backend.send_message("prepare", flat, OWNER)
        for rank in range(world_size) if keys.numel() else ():
            if rank != OWNER:
                backend.send_message("keys", keys, rank)
        log(f"dealer: {len(requests)} requests, {(offset + dealt_offset) * 8 / 1e6:.1f} MB in "
            f"{time.perf_counter() - began:.2f} s")
        del flat, keys  # before the next batch's buffers are allocated


@dataclass
class OfflinePhase:
    """One party's offline phase: prepares each forward pass before it runs.

    Attributes:
        rank: This party's rank (the owner, rank 0, talks to the dealer).
        enabled: Whether the session has a dealer (TFP sessions have no offline phase).
        seconds, bytes, messages: Totals over the session, this party's.
    """

    rank: int
    enabled: bool
    seconds: float = 0.0
    bytes: int = 0
    messages: int = 0
    _tables: dict[tuple[int, ...], list[Request]] = field(default_factory=dict)

    def prepare(self, shape: tuple[int, ...], dry_forward: Callable[[], object]) -> None:
        """Prepare the forward pass on an input of ``shape`` (``dry_forward`` runs it)."""
        self._prepare(shape, dry_forward)

    def run(self, step: Callable[[], object]) -> None:
        """Run a step of secure code that is not a forward pass (e.g. the weights' fixed
        masks, :meth:`~secvit.secure.plan.SecurePlan.fix_weight_masks`) with its
        correlated values prepared first (not cached: each run is new)."""
        self._prepare(None, step)
        step()
        self.finish()

    def _prepare(self, key: tuple[int, ...] | None, dry_run: Callable[[], object]) -> None:
        if not self.enabled:
            return
        began = time.perf_counter()
        provider = backend.dealer_provider()
        requests = self._tables.get(key) if key is not None else None
        if requests is None:
            with backend.dry_run() as recorded:
                dry_run()
            requests = list(recorded)
            if key is not None:
                self._tables[key] = requests
        if self.rank != OWNER:
            expected = sum(dealt_numel(r) for r in requests)
            keys = None
            if expected:  # comparison keys: the correction words common to both parties' keys
                _, keys = backend.recv_message(backend.dealer_rank(), expected)
                if keys.numel() != expected:
                    raise RuntimeError(f"the dealer sent {keys.numel()} key words; {expected} were due")
                self.bytes += 8 * (2 + expected)
                self.messages += 1
            provider.begin(requests, None, keys)
        else:
            self.bytes += backend.send_message("prepare", encode(requests), backend.dealer_rank())
            expected = sum(correction_numel(r) for r in requests)
            _, corrections = backend.recv_message(backend.dealer_rank(), expected)
            if corrections.numel() != expected:
                raise RuntimeError(f"the dealer sent {corrections.numel()} corrections; {expected} were due")
            self.bytes += 8 * (2 + corrections.numel())
            self.messages += 2
            provider.begin(requests, corrections)
        self.seconds += time.perf_counter() - began

    def finish(self) -> None:
        """Check that the forward pass used exactly what was prepared."""
        if self.enabled:
            backend.dealer_provider().end()

    def report(self) -> dict[str, float]:
        return {"seconds": self.seconds, "bytes": self.bytes, "messages": self.messages}
