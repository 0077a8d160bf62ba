"""Framed messages on authenticated channels, and the exchange that moves them.

A :class:`Channel` is one TLS connection to one peer (or, behind an insecure flag, a
plain TCP one). Every message is a frame: a 16-byte header (magic, tag, payload length)
and the payload. :func:`exchange` sends and receives any number of frames on any number
of channels at once, in one thread (non-blocking sockets and ``select``): a two-party
opening is each party sending its frame while it receives the peer's, one one-way delay.

A frame is checked before its payload is read: a wrong magic or tag, or a length other
than the one expected (or above the bound for a variable-size message), ends the
exchange with :class:`ChannelError` naming the peer; so does silence beyond the timeout
and a connection the peer closed.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

__all__ = ["Channel", "ChannelError", "Frame", "PeerClosed", "TAGS", "exchange", "tensor_bytes", "transfer"]

_HEADER = struct.Struct("<IIQ")
_MAGIC = 0x53564954  # "SVIT"
_SMALL = 64 * 1024  # header and payload leave in one write below this size
_CHUNK = 1 << 20
TAGS = {"tensor": 1, "hello": 2, "table": 3, "control": 4}
_TAG_NAMES = {v: k for k, v in TAGS.items()}


class ChannelError(RuntimeError):
    """A peer sent something malformed, went silent, or closed its connection."""


class PeerClosed(ChannelError):
    """The peer's end of the connection is gone (its process ended, or the network failed)."""


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor (a view: writing it writes the tensor)."""
    return memoryview(t.numpy()).cast("B") if t.numel() else memoryview(b"")


@dataclass
class Frame:
    """A frame to receive: its tag and either a buffer of the exact expected size, or
    ``limit`` (the largest payload accepted; the payload is then allocated and kept in
    ``payload``)."""

    tag: str
    buffer: memoryview | None = None
    limit: int = 0
    payload: memoryview | None = None
    _header: bytearray = field(default_factory=lambda: bytearray(_HEADER.size))
    _got: int = 0

    @property
    def complete(self) -> bool:
        return self.payload is not None and self._got == len(self.payload)

    def target(self) -> memoryview:
        return self.payload if self.payload is not None else memoryview(self._header)

    def advance(self, n: int, peer: str) -> bool:
        """Account ``n`` received bytes; True once the whole frame is in."""
        self._got += n
        if self.payload is None and self._got == _HEADER.size:
            self._start_payload(peer)
        return self.complete

    def _start_payload(self, peer: str) -> None:
        magic, tag, length = _HEADER.unpack(self._header)
        if magic != _MAGIC or tag != TAGS[self.tag]:
            raise ChannelError(f"malformed frame from {peer}: expected a {self.tag} frame, got "
                               f"{_TAG_NAMES.get(tag, 'unknown') if magic == _MAGIC else 'no frame header'}")
        if self.buffer is not None and length != len(self.buffer):
            raise ChannelError(f"malformed frame from {peer}: {length} bytes where {len(self.buffer)} were due")
        if self.buffer is None and length > self.limit:
            raise ChannelError(f"oversized frame from {peer}: {length} bytes, at most {self.limit} accepted")
        self.payload = self.buffer if self.buffer is not None else memoryview(bytearray(length))
        self._got = 0


class Channel:
    """One connection to one peer; ``name`` says who it is in errors."""

    def __init__(self, sock: socket.socket, name: str, address: str):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock, self.name, self.address = sock, name, address
        self._out: deque[memoryview] = deque()
        self._in: deque[Frame] = deque()

    def queue(self, tag: str, payload: Any = b"") -> None:
        """Queue one frame for the next :func:`exchange`."""
        data = payload if isinstance(payload, memoryview) else memoryview(payload).cast("B")
        header = _HEADER.pack(_MAGIC, TAGS[tag], len(data))
        if len(data) <= _SMALL:
            self._out.append(memoryview(header + bytes(data)))
        else:
            self._out.extend((memoryview(header), data))

    def expect(self, frame: Frame) -> Frame:
        """Queue one frame to receive in the next :func:`exchange`."""
        self._in.append(frame)
        return frame

    @property
    def busy(self) -> bool:
        return bool(self._out or self._in)

    def poll(self) -> None:
        """Receive whatever has arrived for the expected frames, without waiting."""
        self._read()

    def _pending(self) -> bool:
        return bool(self._in) and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def _read(self) -> bool:
        """Receive what is available; True if any byte came."""
        progress = False
        while self._in:
            frame = self._in[0]
            view = frame.target()[frame._got:]
            try:
                n = self.sock.recv_into(view, min(len(view), _CHUNK)) if len(view) else 0
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return progress
            except (ConnectionError, ssl.SSLError, OSError) as e:
                raise PeerClosed(f"lost the connection to {self.name} ({_reason(e)})") from None
            if len(view) and n == 0:
                raise PeerClosed(f"{self.name} closed the connection")
            progress = True
            if frame.advance(n, self.name):
                self._in.popleft()
        return progress

    def _write(self) -> bool:
        """Send what the socket takes; True if any byte left."""
        progress = False
        while self._out:
            head = self._out[0]
            try:
                n = self.sock.send(head[:_CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return progress
            except (ConnectionError, ssl.SSLError, OSError) as e:
                raise PeerClosed(f"lost the connection to {self.name} ({_reason(e)})") from None
            progress = True
            if n == len(head):
                self._out.popleft()
            else:
                self._out[0] = head[n:]
        return progress

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


_REFUSALS = ("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_REQUIRED", "ALERT_DECRYPT_ERROR")


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or type(e).__name__
    return "it refused this party's certificate" if any(r in reason for r in _REFUSALS) else reason


def exchange(channels: Iterable[Channel], timeout_s: float, receive: bool = True) -> None:
    """Send every queued frame and receive every expected one on ``channels``, all at once
    (with ``receive`` False: only send, leaving expected frames for later).

    Raises:
        ChannelError: a malformed or oversized frame, a closed connection, or no progress
            for ``timeout_s`` (naming the peers still owed).
    """
    def owed(c: Channel) -> bool:
        return c.busy if receive else bool(c._out)

    active = [c for c in channels if owed(c)]
    last = time.monotonic()
    while active:
        progress = False
        for c in active:
            if c._out:
                progress |= c._write()
            if receive and c._pending():
                progress |= c._read()
        active = [c for c in active if owed(c)]
        if progress or not active:
            last = time.monotonic()
            continue
        wait = timeout_s - (time.monotonic() - last)
        if wait <= 0:
            raise ChannelError(f"no data from {', '.join(c.name for c in active)} for {timeout_s:.0f} s")
        readable, writable, _ = select.select([c.sock for c in active if receive and c._in],
                                              [c.sock for c in active if c._out], [], wait)
        for c in active:
            if c.sock in readable:
                progress |= c._read()
            if c.sock in writable:
                progress |= c._write()
        if progress:
            last = time.monotonic()


def transfer(channels: dict[int, Channel], sends: dict[int, list[torch.Tensor]],
             receives: dict[int, list[torch.Tensor | Frame]], timeout_s: float) -> None:
    """Send ``sends[p]`` to each peer ``p`` and receive ``receives[p]`` from each (tensors
    filled in place, or :class:`Frame` objects for variable sizes), in one :func:`exchange`."""
    for peer, tensors in sends.items():
        for t in tensors:
            channels[peer].queue("tensor", tensor_bytes(t.detach().contiguous()))  # the view keeps t alive
    for peer, items in receives.items():
        for item in items:
            channels[peer].expect(item if isinstance(item, Frame) else Frame("tensor", tensor_bytes(item)))
    exchange([channels[p] for p in {*sends, *receives}], timeout_s)
