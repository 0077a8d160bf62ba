"""Failure detection between parties, over their authenticated control channels.

Each process sends a heartbeat frame to every peer it watches every ``interval_s`` on
the pair's control channel (:func:`protocols.backend.control_channels`), which only the
watchdog's thread uses. A peer is lost when its control channel closes before it said
``done``, or when it sends nothing for ``stale_s``; a peer that fails sends its error, so
the others stop at once with its message. On loss the watchdog prints one line naming
the peer and ends the process with :data:`EXIT_PEER_LOST`: nothing hangs. Only a
certified peer can send on these channels: nothing a stranger writes ends a session.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time

from protocols.backend import ChannelError
from protocols.mpc_runtime.channels import Channel, Frame, exchange

from .roles import role_name

__all__ = ["EXIT_PEER_LOST", "Watchdog"]

EXIT_PEER_LOST = 3
_LIMIT = 1024
_TICK_S = 0.05
_HEARTBEAT, _ERROR, _DONE = b"h", b"e", b"d"


class Watchdog:
    """Heartbeats and peer checks for one process (a daemon thread).

    Args:
        rank: This process's rank.
        world_size: Computing parties (the dealer, if any, has rank ``world_size``).
        peers: Ranks to watch.
        channels: Control channels by rank (at least those of ``peers``).
        interval_s: Heartbeat period.
        stale_s: Silence after which a peer counts as lost. 60 s: with 10 s, a live owner
            lost its client while the dealer prepared a 16-image batch of trigonometric
            masks (about 70 s, 6.7 GB), three times in five, the client's watchdog idle
            in ``select`` all along (cause not found); a crashed peer is named at once.
    """

    def __init__(self, rank: int, world_size: int, peers: list[int], channels: dict[int, Channel],
                 interval_s: float = 1.0, stale_s: float = 60.0):
        self.rank, self.world_size, self.peers = rank, world_size, peers
        self.channels = {p: channels[p] for p in peers}
        self.interval_s, self.stale_s = interval_s, stale_s
        self.done: set[int] = set()
        self._closed: set[int] = set()
        self._outbox: queue.Queue[bytes] = queue.Queue()
        self._sent = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="secvit-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def _lost(self, message: str) -> None:
        print(f"secvit: {role_name(self.rank, self.world_size)}: {message}", file=sys.stderr, flush=True)
        os._exit(EXIT_PEER_LOST)

    def _send(self, payload: bytes) -> None:
        live = [c for p, c in self.channels.items() if p not in self._closed]
        for channel in live:
            channel.queue("control", payload)
        try:
            exchange(live, self.stale_s, receive=False)
        except ChannelError:
            pass  # a closed channel is reported by the read side, with the peer's last word

    def _loop(self) -> None:
        frames = {p: c.expect(Frame("control", limit=_LIMIT)) for p, c in self.channels.items()}
        heard = {p: time.monotonic() for p in self.peers}
        next_beat = 0.0
        while not (self._stop.is_set() and self._outbox.empty()):
            while not self._outbox.empty():
                self._send(self._outbox.get())
                self._sent.set()
            now = time.monotonic()
            if now >= next_beat:
                self._send(_HEARTBEAT)
                next_beat = now + self.interval_s
            watching = {p: c for p, c in self.channels.items() if p not in self._closed}
            if not watching:
                self._stop.wait(_TICK_S)
                continue
            readable, _, _ = select.select([c.sock for c in watching.values()], [], [], _TICK_S)
            for peer, channel in watching.items():
                if channel.sock in readable or channel._pending():
                    self._read(peer, channel, frames, heard)
            silent = [p for p in watching if p not in self.done | self._closed
                      and time.monotonic() - heard[p] > self.stale_s]
            if silent and not self._stop.is_set():
                self._lost(f"lost {role_name(silent[0], self.world_size)}: no heartbeat for {self.stale_s:.0f} s")

    def _read(self, peer: int, channel: Channel, frames: dict[int, Frame], heard: dict[int, float]) -> None:
        while True:
            try:
                channel.poll()
            except ChannelError:
                if peer not in self.done and not self._stop.is_set():
                    self._lost(f"lost {role_name(peer, self.world_size)}: its connection closed")
                self._closed.add(peer)
                return
            if not frames[peer].complete:
                return
            payload = bytes(frames[peer].payload)
            heard[peer] = time.monotonic()
            if payload[:1] == _ERROR:
                self._lost(f"{role_name(peer, self.world_size)} failed: {payload[1:].decode(errors='replace')}")
            if payload[:1] == _DONE:
                self.done.add(peer)
            frames[peer] = channel.expect(Frame("control", limit=_LIMIT))

    def _post(self, payload: bytes, wait_s: float = 2.0) -> None:
        if not self._thread.is_alive():
            return
        self._sent.clear()
        self._outbox.put(payload)
        self._sent.wait(wait_s)

    def post_error(self, message: str) -> None:
        """Tell the peers this process failed (best effort)."""
        self._post(_ERROR + message[:500].encode())

    def join(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the watchdog to detect a lost peer (it ends the process)."""
        self._thread.join(timeout=grace_s)

    def finish(self, timeout_s: float = 30.0) -> None:
        """Say ``done``, wait until every watched peer has said so too (so nobody closes a
        channel a peer still reads), and stop the thread."""
        self._post(_DONE)
        deadline = time.monotonic() + timeout_s
        while not self.done.issuperset(self.peers) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(_TICK_S)
        self._stop.set()
        self._thread.join(timeout=self.stale_s)
