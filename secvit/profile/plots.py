"""PNG charts of profiles (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .profiler import KINDS  # noqa: E402
from .report import ProfileReport  # noqa: E402

__all__ = ["plot_comparison", "plot_profile"]

_PARTS = ("compute", "latency", "transfer")


def plot_profile(report: ProfileReport, path: str | Path) -> None:
    """Left: estimated seconds per op kind, stacked by compute / latency (rounds x RTT) /
    transfer (bytes / bandwidth). Right: estimated seconds per layer, stacked by op kind."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    kinds = [k for k in KINDS if any(n["kind"] == k for n in report.nodes)]
    bottom = [0.0] * len(kinds)
    for part in _PARTS:
        values = [sum(n["estimate"][part] for n in report.nodes if n["kind"] == k) for k in kinds]
        left.bar(kinds, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.set_ylabel(f"estimated seconds ({report.network.name})")
    left.set_title("per op kind")
    left.legend()
    layers = list(report.by_layer())
    bottom = [0.0] * len(layers)
    for kind in kinds:
        values = [sum(n["estimated_seconds"] for n in report.nodes
                      if n["kind"] == kind and ("-" if n["layer"] is None else str(n["layer"])) == layer)
                  for layer in layers]
        right.bar(layers, values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values)]
    right.set_xlabel("layer ('-': outside the blocks)")
    right.set_title("per layer")
    right.legend()
    fig.suptitle(f"{report.model}, policy {report.policy}, {report.images} images per batch, "
                 f"network {report.network.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_comparison(rows: list[dict[str, Any]], network: str, path: str | Path) -> None:
    """Estimated seconds per image for each policy, stacked by op kind, and MB per image."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    policies = [r["policy"] for r in rows]
    bottom = [0.0] * len(rows)
    for kind in KINDS:
        values = [r["by_kind"].get(kind, 0.0) for r in rows]
        if any(values):
            left.bar(policies, values, bottom=bottom, label=kind)
            bottom = [b + v for b, v in zip(bottom, values)]
    left.set_ylabel(f"estimated seconds per image ({network})")
    left.legend()
    right.bar(policies, [r["bytes_per_image"] / 1e6 for r in rows], color="tab:gray")
    right.set_ylabel("MB per image per party")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
