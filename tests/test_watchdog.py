"""The parties' watchdog: its heartbeat thread is gone when a party finishes."""

from __future__ import annotations

import time

from torch.distributed import HashStore, distributed_c10d

from secvit.runtime.watchdog import Watchdog


class SlowStore:
    """A store whose calls take as long as a WAN round trip."""

    def __init__(self, delay_s: float):
        self.inner, self.delay_s = HashStore(), delay_s

    def __getattr__(self, name: str):
        call = getattr(self.inner, name)

        def slow(*args):
            time.sleep(self.delay_s)
            return call(*args)
        return slow


def test_finish_waits_for_the_heartbeat_thread_in_a_store_call(monkeypatch):
    """Teardown after finish() must not race a store call of the heartbeat thread."""
    store = SlowStore(delay_s=0.3)
    monkeypatch.setattr(distributed_c10d, "_get_default_store", lambda: store)
    watchdog = Watchdog(rank=1, world_size=2, peers=[0], interval_s=0.05).start()
    time.sleep(0.2)  # the thread is now inside a slow store call
    watchdog.finish(wait_for=[])
    assert not watchdog._thread.is_alive()
