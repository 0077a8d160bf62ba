"""Accuracy against measured secure cost, over checkpoints (``secvit pareto``).

Each checkpoint contributes its recorded test accuracy (``meta.json``, measured on the
shipped weights) and the cost of one profiled secure run (rounds, MB per image per party,
seconds measured and estimated on a network profile). A point is on the Pareto front when
no other point is at least as accurate and at most as costly, and strictly better in one
(costs within 2% are a tie: the measured part of an estimate varies that much).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import load_meta
from ..network import NetworkProfile
from ..errors import UsageError

__all__ = ["COST_TOLERANCE", "markdown", "pareto_front", "tradeoff_rows"]

COST_TOLERANCE = 0.02
"""Relative difference below which two costs are a tie on the Pareto front."""


def pareto_front(rows: list[dict[str, Any]], cost: str = "estimated_seconds_per_image",
                 accuracy: str = "test_accuracy", rel_tol: float = COST_TOLERANCE) -> list[bool]:
    """Per row: whether it is Pareto-optimal (lower ``cost``, higher ``accuracy``).

    Costs within ``rel_tol`` of each other count as equal, and so do those of rows with
    the same rounds and bytes (the same protocols): an estimate includes measured compute
    seconds, which vary between runs, by more than a few percent on a loaded machine.
    """
    def same_protocols(o: dict, r: dict) -> bool:
        return all(k in o and k in r and o[k] == r[k] for k in ("rounds", "mb_per_image"))

    def dominates(o: dict, r: dict) -> bool:
        tie = same_protocols(o, r)
        as_cheap = tie or o[cost] <= r[cost] * (1 + rel_tol)
        cheaper = not tie and o[cost] < r[cost] * (1 - rel_tol)
        return as_cheap and o[accuracy] >= r[accuracy] and (cheaper or o[accuracy] > r[accuracy])
    return [not any(dominates(o, r) for o in rows) for r in rows]


def tradeoff_rows(checkpoints: list[str], network: str | NetworkProfile, n: int = 1,
                  names: list[str] | None = None) -> list[dict]:
    """Profile each checkpoint (``n`` images) and pair its cost with its test accuracy.

    Raises:
        ValueError: a checkpoint without a recorded test accuracy (train it with secvit).
    """
    from .run import run_profile

    metas = [load_meta(c) for c in checkpoints]  # every checkpoint is valid before any party starts
    for ckpt, meta in zip(checkpoints, metas):
        if meta.extra.get("test_accuracy") is None:
            raise UsageError(f"{ckpt}: meta.json records no test_accuracy")
    rows = []
    for i, (ckpt, meta) in enumerate(zip(checkpoints, metas)):
        report = run_profile(ckpt, None, n, network=network)
        t = report.totals
        rows.append({"name": names[i] if names else Path(ckpt).name, "checkpoint": ckpt, "policy": report.policy,
                     "depth": meta.depth, "test_accuracy": meta.extra["test_accuracy"],
                     "test_images": meta.extra.get("test_images"), "rounds": t["rounds"],
                     "mb_per_image": t["bytes_per_party"] / n / 1e6, "seconds_per_image": t["seconds"] / n,
                     "estimated_seconds_per_image": t["estimated_seconds"] / n})
    for row, front in zip(rows, pareto_front(rows)):
        row["pareto"] = front
    return rows


def markdown(rows: list[dict[str, Any]], network: str) -> str:
    """The rows as a markdown table (Pareto-optimal rows marked)."""
    lines = [f"| model | policy | blocks | test acc. | rounds | MB/image | s/image (measured) | s/image ({network}, est.) "
             "| Pareto |", "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
    lines += [f"| {r['name']} | {r['policy']} | {r['depth']} | {r['test_accuracy']:.2%} | {r['rounds']} | "
              f"{r['mb_per_image']:.1f} | {r['seconds_per_image']:.2f} | {r['estimated_seconds_per_image']:.1f} | "
              f"{'yes' if r['pareto'] else ''} |" for r in rows]
    return "\n".join(lines) + "\n"
