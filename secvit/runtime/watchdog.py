"""Failure detection between parties over the rendezvous store.

Each party bumps a heartbeat counter in the store every ``interval_s``; a party whose
counter stops moving for ``stale_s`` without having posted ``done`` is declared lost,
as is rank 0 when the store it hosts disappears. A party that fails posts its error so
the others stop at once with its message. On loss the watchdog prints one line naming
the lost party and ends the process with :data:`EXIT_PEER_LOST`: nothing hangs.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from torch.distributed import distributed_c10d

from .roles import role_name

__all__ = ["EXIT_PEER_LOST", "Watchdog"]

EXIT_PEER_LOST = 3


class Watchdog:
    """Heartbeats and peer checks for one party (a daemon thread).

    Args:
        rank: This party's rank.
        world_size: Computing parties (the dealer, if any, has rank ``world_size``).
        peers: Ranks to watch (all others by default).
        interval_s: Heartbeat period.
        stale_s: Silence after which a peer counts as lost.
    """

    def __init__(self, rank: int, world_size: int, peers: list[int], interval_s: float = 1.0, stale_s: float = 10.0):
        self.rank, self.world_size, self.peers = rank, world_size, peers
        self.interval_s, self.stale_s = interval_s, stale_s
        self.store = distributed_c10d._get_default_store()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="secvit-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self.store.add(f"secvit/hb/{self.rank}", 1)
        self._thread.start()
        return self

    def _lost(self, message: str) -> None:
        print(f"secvit: {role_name(self.rank, self.world_size)}: {message}", file=sys.stderr, flush=True)
        os._exit(EXIT_PEER_LOST)

    def _loop(self) -> None:
        last = {p: (-1, time.monotonic()) for p in self.peers}
        while not self._stop.wait(self.interval_s):
            try:
                self.store.add(f"secvit/hb/{self.rank}", 1)
                if all(self.store.check([f"secvit/done/{p}"]) for p in self.peers):
                    return  # nobody left to watch
                for peer in self.peers:
                    if self.store.check([f"secvit/error/{peer}"]):
                        error = self.store.get(f"secvit/error/{peer}").decode()
                        self._lost(f"{role_name(peer, self.world_size)} failed: {error}")
                    if self.store.check([f"secvit/done/{peer}"]):
                        continue
                    beat = self.store.add(f"secvit/hb/{peer}", 0)
                    seen, since = last[peer]
                    now = time.monotonic()
                    if beat != seen:
                        last[peer] = (beat, now)
                    elif now - since > self.stale_s:
                        self._lost(f"lost {role_name(peer, self.world_size)}: no heartbeat for {self.stale_s:.0f} s")
            except Exception as e:  # the store lives in rank 0: it is gone with rank 0
                if self._stop.is_set():
                    return
                self._lost(f"lost {role_name(0, self.world_size)}: rendezvous store unreachable ({type(e).__name__})")

    def post_error(self, message: str) -> None:
        """Tell the peers this party failed (best effort)."""
        try:
            self.store.set(f"secvit/error/{self.rank}", message[:500])
        except Exception:
            pass

    def join(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the watchdog to detect a lost peer (it ends the process)."""
        self._thread.join(timeout=grace_s)

    def finish(self, wait_for: list[int], timeout_s: float = 30.0) -> None:
        """Post ``done``, wait until the ranks ``wait_for`` have posted theirs, and stop the
        heartbeat thread. The thread is joined: one still inside a store call when the
        process group is torn down can abort the process at exit."""
        self.store.set(f"secvit/done/{self.rank}", "1")
        deadline = time.monotonic() + timeout_s
        for peer in wait_for:
            while not self.store.check([f"secvit/done/{peer}"]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=self.stale_s)
