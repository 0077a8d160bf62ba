"""Rich tables of a profile: top nodes, per op kind, per layer, and a policy comparison."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .report import ProfileReport

__all__ = ["comparison_table", "profile_tables"]


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.2f}"


def _group_table(title: str, label: str, groups: dict[str, dict[str, float]], total_est: float) -> Table:
    table = Table(title=title)
    for col in (label, "nodes", "seconds", "MB (both parties)", "rounds", "est. seconds", "share"):
        table.add_column(col, justify="left" if col == label else "right")
    for name, g in groups.items():
        table.add_row(name, str(int(g["nodes"])), f"{g['seconds']:.3f}", _mb(g["bytes"]), str(int(g["rounds"])),
                      f"{g['estimated_seconds']:.3f}", f"{g['estimated_seconds'] / total_est:.1%}")
    return table


def profile_tables(report: ProfileReport, top: int = 10) -> list[Table]:
    """Top nodes by estimated time, then the per-kind and per-layer breakdowns."""
    net = report.network
    totals = report.totals
    head = Table(title=f"top {top} nodes: {report.model}, policy {report.policy}, {report.images} images, "
                       f"network {net.name} ({net.bandwidth_mbps:g} Mbit/s, {net.rtt_ms:g} ms RTT)")
    for col in ("node", "kind", "protocol", "layer", "seconds", "MB (both parties)", "rounds", "est. seconds"):
        head.add_column(col, justify="left" if col in ("node", "kind", "protocol") else "right")
    for n in report.top(top):
        head.add_row(n["node"], n["kind"], n["protocol"] or "", "" if n["layer"] is None else str(n["layer"]),
                     f"{n['seconds']:.3f}", _mb(n["bytes"]), str(n["rounds"]), f"{n['estimated_seconds']:.3f}")
    return [head,
            _group_table("per op kind", "kind", report.by_kind(), totals["estimated_seconds"]),
            _group_table("per layer ('-': outside the blocks)", "layer", report.by_layer(), totals["estimated_seconds"])]


def comparison_table(rows: list[dict[str, Any]], network: str) -> Table:
    """One row per policy: measured seconds, bytes and rounds per party, estimated seconds."""
    table = Table(title=f"policies compared (per party; per image unless noted; estimate on {network})")
    for col in ("policy", "seconds", "MB", "rounds (per batch)", f"est. seconds ({network})", "images/s"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in rows:
        table.add_row(r["policy"], f"{r['seconds_per_image']:.2f}", _mb(r["bytes_per_image"]), str(r["rounds"]),
                      f"{r['estimated_seconds_per_image']:.2f}", f"{r['images_per_second']:.2f}")
    return table
