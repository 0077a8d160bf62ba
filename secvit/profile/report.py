"""A profile of one secure run: per-node records merged over parties, grouped by op kind
and layer, with estimated times under a network profile; JSON, CSV, tables and plots.

Record fields per node: ``parties`` (per rank: ``seconds``, ``bytes``, ``rounds``, this
party's own cost), ``seconds`` and ``rounds`` (the largest over parties: the parties run
in lockstep), ``bytes`` (summed over parties) and ``estimated_seconds`` (the node on the
network: its seconds + rounds x RTT + one party's bytes / 2 / bandwidth). Per party, the
nodes' sums equal that party's totals exactly; ``bytes`` sums to the sum over parties.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..network import NetworkProfile
from .profiler import KINDS

__all__ = ["ProfileReport", "merge_parties"]

_COST = ("seconds", "bytes", "rounds")


def merge_parties(party_records: dict[int, list[dict[str, Any]]], network: NetworkProfile) -> list[dict[str, Any]]:
    """One record per node (first-seen order) with per-party and combined costs."""
    nodes: dict[str, dict[str, Any]] = {}
    for rank, records in sorted(party_records.items()):
        for r in records:
            node = nodes.setdefault(r["node"], {k: r[k] for k in ("node", "module", "layer", "kind", "protocol")}
                                    | {"parties": {}})
            node["parties"][str(rank)] = {k: r[k] for k in _COST}
    for node in nodes.values():
        costs = node["parties"].values()
        node["seconds"] = max(c["seconds"] for c in costs)
        node["rounds"] = max(c["rounds"] for c in costs)
        node["bytes"] = sum(c["bytes"] for c in costs)
        node["estimate"] = network.components(node["seconds"], max(c["bytes"] for c in costs), node["rounds"])
        node["estimated_seconds"] = sum(node["estimate"].values())
    return list(nodes.values())


def _group(nodes: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "bytes": 0, "rounds": 0,
                                                              "estimated_seconds": 0.0, "nodes": 0})
    for n in nodes:
        g = groups["-" if n[key] is None else str(n[key])]
        for k in ("seconds", "bytes", "rounds", "estimated_seconds"):
            g[k] += n[k]
        g["nodes"] += 1
    return dict(groups)


@dataclass
class ProfileReport:
    """Merged profile of one run (see the module docstring for the record fields)."""

    model: str
    policy: str
    images: int
    batch_size: int
    network: NetworkProfile
    parties: dict[str, dict[str, float]]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    netem: dict[str, float] | None = None
    truncation_risk: dict[str, Any] | None = None

    @property
    def totals(self) -> dict[str, float]:
        """Whole-run figures: ``bytes`` per party (the largest) and summed over parties."""
        return {
            "seconds": max(p["seconds"] for p in self.parties.values()),
            "bytes_per_party": max(p["bytes"] for p in self.parties.values()),
            "bytes_all_parties": sum(p["bytes"] for p in self.parties.values()),
            "rounds": max(p["rounds"] for p in self.parties.values()),
            "estimated_seconds": sum(n["estimated_seconds"] for n in self.nodes),
            "images_per_second": self.images / max(p["seconds"] for p in self.parties.values()),
            **self.offline,
        }

    @property
    def offline(self) -> dict[str, Any]:
        """The offline phase (the dealer's preprocessing; the largest party's), the
        truncations and what made the run insecure, when the parties reported them."""
        parties = self.parties.values()
        if not all("offline_seconds" in p for p in parties):
            return {}
        seconds = max(p["offline_seconds"] for p in parties)
        nbytes = max(p["offline_bytes"] for p in parties)
        messages = max(p["offline_messages"] for p in parties)
        return {"offline_seconds": seconds, "offline_bytes": nbytes, "offline_messages": messages,
                "offline_estimated_seconds": self.network.estimate(seconds, nbytes, messages),
                "truncated_elements": max(p["truncated_elements"] for p in parties),
                "insecure": sorted({r for p in parties for r in p["insecure"]})}

    def by_kind(self) -> dict[str, dict[str, float]]:
        groups = _group(self.nodes, "kind")
        return {k: groups[k] for k in KINDS if k in groups}

    def by_layer(self) -> dict[str, dict[str, float]]:
        groups = _group(self.nodes, "layer")
        return dict(sorted(groups.items(), key=lambda kv: (kv[0] == "-", int(kv[0]) if kv[0] != "-" else 0)))

    def comparison_row(self) -> dict[str, Any]:
        """Headline figures per image (one party) for :func:`~secvit.profile.tables.comparison_table`."""
        t = self.totals
        return {"policy": self.policy, "images": self.images, "seconds_per_image": t["seconds"] / self.images,
                "bytes_per_image": t["bytes_per_party"] / self.images, "rounds": t["rounds"],
                "estimated_seconds_per_image": t["estimated_seconds"] / self.images,
                "images_per_second": t["images_per_second"],
                "by_kind": {k: g["estimated_seconds"] / self.images for k, g in self.by_kind().items()}}

    def top(self, k: int = 10, key: str = "estimated_seconds") -> list[dict[str, Any]]:
        return sorted(self.nodes, key=lambda n: n[key], reverse=True)[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "policy": self.policy, "images": self.images, "batch_size": self.batch_size,
                "network": self.network.to_dict(), "totals": self.totals, "parties": self.parties,
                "by_kind": self.by_kind(), "by_layer": self.by_layer(), "netem": self.netem,
                "truncation_risk": self.truncation_risk, "nodes": self.nodes}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def write_csv(self, path: str | Path) -> None:
        ranks = sorted(self.parties)
        columns = ["node", "module", "layer", "kind", "protocol", "seconds", "bytes", "rounds", "estimated_seconds"]
        columns += [f"{k}_party{r}" for r in ranks for k in _COST]
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for n in self.nodes:
                row = [n[c] for c in columns[:9]]
                row += [n["parties"].get(r, {}).get(k, "") for r in ranks for k in _COST]
                writer.writerow(row)
