"""Benchmark helpers: the in-process 2-party runner shared with the test suite.

``from benchmarks.conftest import run_2pc, as_tensor`` in benchmark modules.
"""

from __future__ import annotations

from tests.conftest import as_tensor, run_2pc

__all__ = ["as_tensor", "run_2pc"]
