"""A userspace link emulator for kernels without ``sch_netem``: a TUN device in each of two
network namespaces, and this process copying IP packets between them after a one-way
delay (RTT / 2) and at a bandwidth (each direction its own FIFO link, no loss).

    python -m secvit.runtime.delayline NS0 NS1 IFACE RTT_MS MBPS

It attaches to the TUN devices ``IFACE`` that :func:`secvit.runtime.netem.netem_link`
created in both namespaces, prints ``ready`` and runs until killed.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import os
import select
import struct
import sys
import time

__all__ = ["Link", "open_tun"]

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


def open_tun(namespace: str, iface: str) -> int:
    """A file descriptor on the TUN device ``iface`` of network namespace ``namespace``."""
    libc = ctypes.CDLL(None, use_errno=True)
    ns = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(ns, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({namespace}) failed")
    finally:
        os.close(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", iface.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


class Link:
    """Two FIFO directions of ``mbps`` each, every packet delivered ``delay_s`` after its
    last bit left."""

    def __init__(self, delay_s: float, mbps: float):
        self.delay_s, self.seconds_per_byte = delay_s, 8 / (mbps * 1e6)
        self.free_at = [0.0, 0.0]
        self.queue: list[tuple[float, int, int, bytes]] = []
        self.sequence = 0

    def send(self, direction: int, packet: bytes, now: float) -> None:
        self.free_at[direction] = max(now, self.free_at[direction]) + len(packet) * self.seconds_per_byte
        self.sequence += 1
        heapq.heappush(self.queue, (self.free_at[direction] + self.delay_s, self.sequence, direction, packet))

    def due(self, now: float) -> list[tuple[int, bytes]]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            _, _, direction, packet = heapq.heappop(self.queue)
            out.append((direction, packet))
        return out

    def wait(self, now: float) -> float | None:
        return max(0.0, self.queue[0][0] - now) if self.queue else None


def _relay(fds: list[int], link: Link) -> None:
    while True:
        readable, _, _ = select.select(fds, [], [], link.wait(time.monotonic()))
        now = time.monotonic()
        for fd in readable:
            direction = fds.index(fd)
            while True:
                try:
                    link.send(direction, os.read(fd, 65536), now)
                except BlockingIOError:
                    break
        for direction, packet in link.due(time.monotonic()):
            os.write(fds[1 - direction], packet)


def main(argv: list[str]) -> None:
    ns0, ns1, iface, rtt_ms, mbps = argv
    fds = [open_tun(ns0, iface), open_tun(ns1, iface)]
    print("ready", flush=True)
    _relay(fds, Link(float(rtt_ms) / 2e3, float(mbps)))


if __name__ == "__main__":
    main(sys.argv[1:])
