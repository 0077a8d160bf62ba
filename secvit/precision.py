"""Fixed-point precision under MPC, measured (``secvit precision``): the same check
(:func:`secvit.check.run_check`) at each number of fractional bits, and the fewest bits
whose emulated accuracy on the whole sample stays within a tolerance of the float
reference's.

Fewer fractional bits shrink every value's encoding error budget (2^-p) and, with
CrypTen's local truncation, the failure probability (|v| 2^p / 2^63 per element:
``truncation.local_corrupted_images_per_million``); the exact truncation secvit runs by
default never fails inside its range, whatever p.
"""

from __future__ import annotations

from typing import Any, Callable

from .check import run_check

__all__ = ["fewest_bits", "precision_sweep"]


def fewest_bits(rows: list[dict[str, Any]], tolerance: float) -> int | None:
    """The fewest fractional bits from which every larger count measured keeps the
    emulation within ``tolerance`` (a fraction) of the float reference and MPC in full
    agreement with it; None if even the largest does not."""
    ok = [r["accuracy"]["reference"] - r["accuracy"]["emulation"] <= tolerance + 1e-12
          and r["agreement_mpc_vs_reference"] == 1.0 for r in sorted(rows, key=lambda r: r["precision_bits"])]
    bits = sorted(r["precision_bits"] for r in rows)
    fewest = None
    for b, good in zip(reversed(bits), reversed(ok)):
        if not good:
            break
        fewest = b
    return fewest


def precision_sweep(checkpoint: str, bits: list[int], n: int, mpc_n: int, batch_size: int = 8,
                    tolerance: float = 0.005, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """:func:`run_check` of ``checkpoint`` at each of ``bits``; returns
    ``{"checkpoint", "tolerance", "rows", "fewest_bits"}``.

    Raises:
        UsageError: as :func:`run_check` (before any party starts).
    """
    rows = []
    for b in sorted(bits, reverse=True):
        if progress is not None:
            progress(b)
        rows.append({"precision_bits": b, **run_check(checkpoint, None, n, mpc_n, batch_size=batch_size,
                                                        precision_bits=b)})
    return {"checkpoint": checkpoint, "tolerance": tolerance, "rows": rows,
            "fewest_bits": fewest_bits(rows, tolerance)}
