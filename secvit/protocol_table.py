"""The protocol registry as a table: formula, cost and accuracy of every entry.

Costs are the counted ones (:meth:`~protocols.registry.Protocol.total_cost`) for a
ViT-Lite-sized call (softmax rows of N = 65 tokens, 4 heads; activations and norms on
65 x 256), per party, 2 parties, TFP. Accuracy is the
emulation against the reference on the protocol's valid range (plaintext, no parties).
"""

from __future__ import annotations

import math
from typing import Any

import torch

import protocols
from protocols.fixed_point import FixedPoint

__all__ = ["protocol_rows", "to_markdown"]

SHAPES = {"softmax": (1, 4, 65, 65), "activation": (1, 65, 512), "norm": (1, 65, 256)}


def _max_error(p: protocols.Protocol) -> float:
    g = torch.Generator().manual_seed(0)
    shape = SHAPES[p.kind]
    lo, hi = p.valid_range
    x = torch.rand(shape, generator=g) * (hi - lo) + lo
    args = {"weight": torch.randn(shape[-1], generator=g), "bias": torch.randn(shape[-1], generator=g)} if p.kind == "norm" else {}
    return float((p.emulate(x, FixedPoint(16), **args) - p.reference(x, **args).double()).abs().max())


def protocol_rows() -> list[dict[str, Any]]:
    """One row per registered protocol."""
    rows = []
    for p in protocols.protocols():
        shape = SHAPES[p.kind]
        cost = p.total_cost(shape)
        rows.append({"name": p.name, "kind": p.kind, "formula": p.formula, "rounds": cost.rounds,
                     "bytes_per_element": cost.bytes / math.prod(shape), "range": p.valid_range,
                     "max_error": _max_error(p), "paper": p.paper})
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`protocol_rows`."""
    lines = ["| protocol | kind | formula | rounds | bytes / element | max error (range) | from |",
             "|---|---|---|---:|---:|---|---|"]
    for r in rows:
        lo, hi = r["range"]
        formula = r["formula"].replace("|", "\\|")
        lines.append(f"| `{r['name']}` | {r['kind']} | {formula} | {r['rounds']} | {r['bytes_per_element']:.0f} | "
                     f"{r['max_error']:.1e} ([{lo:g}, {hi:g}]) | {r['paper']} |")
    return "\n".join(lines)
