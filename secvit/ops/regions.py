"""Named sub-steps inside a module's secure form, for the profiler.

A leaf such as :class:`~secvit.mpc_modules.MPCAttention` runs several kinds of work
(its projections are ``linear``, Q K^T and A V are ``matmul``, the softmax is the
protocol's). Its secure form marks them with :func:`region`; with no listener installed
(:func:`listening`) a region costs nothing.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Callable, ContextManager, Iterator

__all__ = ["Listener", "listening", "region"]

Listener = Callable[[str, str, "str | None"], ContextManager[None]]
_LISTENER: ContextVar[Listener | None] = ContextVar("secvit_region_listener", default=None)


@contextlib.contextmanager
def region(name: str, kind: str, protocol: str | None = None) -> Iterator[None]:
    """Mark the enclosed work as sub-step ``name`` of kind ``kind`` (``linear``,
    ``matmul``, ``softmax``, ...) run by ``protocol``."""
    listener = _LISTENER.get()
    if listener is None:
        yield
        return
    with listener(name, kind, protocol):
        yield


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every :func:`region` entered in this context to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)
