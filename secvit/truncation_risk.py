"""How many images a plan's truncations are expected to corrupt, from its emulation.

The fixed-point emulation (:func:`~secvit.secure.emulation.emulate`) records every
truncation the secure plan runs and the magnitude of the shared integer it truncates
(:class:`~protocols.fixed_point.TruncationStats`). From those:

* **exact** truncation (the default, :mod:`protocols.truncation`) never fails while every
  magnitude stays below 2^62: 0 corrupted images expected if the emulation stayed in range
  (``None``, "unknown", otherwise);
* **local** truncation fails per element with probability |x| / 2^64: the expected number
  of corrupted images per million is 10^6 times the mean over images of the sum of
  |x| / 2^64 over that image's truncated elements (capped at one failure per image).

The magnitudes are those of the images emulated, so the figure holds for images like
them; ``secvit check`` reports it over as many images as it is given.
"""

from __future__ import annotations

import math
from typing import Any

from protocols.fixed_point import TruncationStats
from protocols.truncation import valid_magnitude

__all__ = ["describe", "truncation_risk"]


def truncation_risk(stats: TruncationStats, images: int, mode: str) -> dict[str, Any]:
    """The expected corruption of ``images`` emulated images under ``mode`` truncation.

    Returns:
        ``mode``, ``elements_per_image_emulation``, ``largest_magnitude_log2``,
        ``exact_range_log2``, ``exact_corrupted_images_per_million``,
        ``local_corrupted_images_per_million`` and ``expected_corrupted_images_per_million``
        (the figure of ``mode``).
    """
    exact = 0.0 if stats.exact_in_range else None
    local = 1e6 * min(1.0, stats.local_failures / images)
    return {"mode": mode,
            "elements_per_image_emulation": stats.elements / images,
            "largest_magnitude_log2": math.log2(stats.largest) if stats.largest else None,
            "exact_range_log2": math.log2(valid_magnitude() + 1),
            "exact_corrupted_images_per_million": exact,
            "local_corrupted_images_per_million": local,
            "expected_corrupted_images_per_million": exact if mode == "exact" else local}


def describe(risk: dict[str, Any]) -> str:
    """One line for the terminal."""
    exact = ("none expected" if risk["exact_corrupted_images_per_million"] == 0
             else "[red]values beyond exact truncation's range[/]")
    largest = risk["largest_magnitude_log2"]
    return (f"truncation ({risk['mode']}): {risk['elements_per_image_emulation']:,.0f} elements per image; largest |x| "
            f"2^{largest if largest is not None else float('-inf'):.1f} of 2^{risk['exact_range_log2']:.0f} "
            f"(exact: {exact}); local truncation would corrupt "
            f"{risk['local_corrupted_images_per_million']:,.0f} images per million")
