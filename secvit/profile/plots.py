"""PNG charts of profiles (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .profiler import KINDS  # noqa: E402
from .report import ProfileReport  # noqa: E402

__all__ = ["plot_comparison", "plot_profile", "plot_tradeoff"]

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


def plot_tradeoff(rows: list[dict[str, Any]], network: str, path: str | Path) -> None:
    """Test accuracy against estimated seconds per image (left) and MB per image (right);
    Pareto-optimal points (``row["pareto"]``, by estimated seconds) joined by a line."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, label in ((axes[0], "estimated_seconds_per_image", f"estimated seconds per image ({network})"),
                           (axes[1], "mb_per_image", "MB per image per party")):
        for i, r in enumerate(sorted(rows, key=lambda r: (r["test_accuracy"], r[key]))):
            ax.scatter(r[key], 100 * r["test_accuracy"], color="tab:red" if r["pareto"] else "tab:gray", zorder=3)
            ax.annotate(r["name"], (r[key], 100 * r["test_accuracy"]), textcoords="offset points", fontsize=8,
                        xytext=(4, 4 if i % 2 == 0 else -11))  # by accuracy, alternately above and below
        front = sorted((r[key], 100 * r["test_accuracy"]) for r in rows if r["pareto"])
        if key == "estimated_seconds_per_image" and len(front) > 1:
            ax.plot(*zip(*front), color="tab:red", linestyle="--", linewidth=1, label="Pareto front")
            ax.legend(loc="lower right")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
