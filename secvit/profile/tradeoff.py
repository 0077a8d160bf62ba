"""Accuracy against measured secure cost, over checkpoints (``secvit pareto``).

Each checkpoint contributes its recorded test accuracy (``meta.json``, measured on the
shipped weights) and the cost of one profiled secure run (rounds, MB per image per party,
seconds measured and estimated on a network profile). A point is on the Pareto front when
no other point is at least as accurate and at most as costly, and strictly better in one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import load_meta
from .network import NetworkProfile

__all__ = ["markdown", "pareto_front", "tradeoff_rows"]


def pareto_front(rows: list[dict[str, Any]], cost: str = "estimated_seconds_per_image",
                 accuracy: str = "test_accuracy") -> list[bool]:
    """Per row: whether it is Pareto-optimal (lower ``cost``, higher ``accuracy``)."""
    def dominated(r: dict) -> bool:
        return any(o[cost] <= r[cost] and o[accuracy] >= r[accuracy] and (o[cost], o[accuracy]) != (r[cost], r[accuracy])
                   for o in rows)
    return [not dominated(r) for r in rows]


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
            raise ValueError(f"{ckpt}: meta.json records no test_accuracy")
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
