"""The watchdog on the control channels: done, errors, lost and silent peers (each rank a
thread of this process; ``_lost`` records instead of ending the process)."""

from __future__ import annotations

import threading
import time

import pytest

from protocols.mpc_runtime.keys import Keyring, make_keys
from protocols.mpc_runtime.mesh import connect_mesh
from secvit.runtime.launcher import free_port
from secvit.runtime.watchdog import Watchdog

# a reported loss ends the watchdog's thread with SystemExit, as os._exit would end the process
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def meshes(tmp_path):
    for rank in range(3):
        make_keys(tmp_path, rank)
    port = free_port()
    out = {}

    def join(rank: int) -> None:
        out[rank] = connect_mesh(rank, 3, ("127.0.0.1", port),
                                 Keyring.load(tmp_path, rank, [r for r in range(3) if r != rank]), 20)

    threads = [threading.Thread(target=join, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    yield out
    for mesh in out.values():
        mesh.close()


@pytest.fixture
def watch(meshes, monkeypatch):
    """``watch(**kwargs)`` starts a watchdog per rank; returns them and the losses they
    reported. Every watchdog is stopped before the channels close."""
    lost: list[tuple[int, str]] = []
    started: list[Watchdog] = []

    def record(self: Watchdog, message: str) -> None:
        lost.append((self.rank, message))
        raise SystemExit  # ends the watchdog's thread, as os._exit would end the process

    monkeypatch.setattr(Watchdog, "_lost", record)

    def start(**kwargs) -> dict[int, Watchdog]:
        dogs = {r: Watchdog(r, 2, [p for p in range(3) if p != r], meshes[r].control, **kwargs) for r in range(3)}
        started.extend(dogs.values())
        return {r: d.start() for r, d in dogs.items()}

    yield start, lost
    for dog in started:
        dog._stop.set()
        dog.join(grace_s=5)


def test_everyone_finishes_after_every_peer_is_done(meshes, watch):
    start, lost = watch
    dogs = start(interval_s=0.05)
    began = time.monotonic()
    finishers = [threading.Thread(target=lambda r=r: (time.sleep(0.3 * r), dogs[r].finish(), meshes[r].close()))
                 for r in range(3)]
    for t in finishers:
        t.start()
    for t in finishers:
        t.join(timeout=20)
    assert not lost, lost
    assert all(not d._thread.is_alive() and d.done == set(d.peers) for d in dogs.values())
    assert time.monotonic() - began < 5


def test_an_error_reaches_every_peer_with_its_message(watch):
    start, lost = watch
    dogs = start(interval_s=0.05)
    dogs[1].post_error("ValueError: bad batch")
    deadline = time.monotonic() + 5
    while len(lost) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(lost) == [(0, "party 1 (client) failed: ValueError: bad batch"),
                            (2, "party 1 (client) failed: ValueError: bad batch")]


def test_a_closed_connection_is_a_lost_peer_at_once(meshes, watch):
    start, lost = watch
    dogs = start(interval_s=0.05, stale_s=30)
    dogs[2]._stop.set()
    meshes[2].close()  # the dealer's process is gone: its connections close
    deadline = time.monotonic() + 5
    while len(lost) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(lost) == [(0, "lost party 2 (dealer): its connection closed"),
                            (1, "lost party 2 (dealer): its connection closed")]


def test_a_silent_peer_is_lost_after_stale_s(watch):
    start, lost = watch
    start(interval_s=30, stale_s=1.0)  # nobody beats after the first
    deadline = time.monotonic() + 8
    while len(lost) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(lost) == 3 and all(m.endswith("no heartbeat for 1 s") for _, m in lost), lost
