"""``secvit profile``, ``secvit compare`` and ``secvit pareto``: run, print tables, write JSON / CSV / PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from ..runtime.security import add_security_flags, security_from_args
from ..truncation_risk import describe
from ..network import load_network, network_names
from ..errors import UsageError

__all__ = ["add_parsers", "cmd_compare", "cmd_pareto", "cmd_profile"]


def _common(p: argparse.ArgumentParser, default_checkpoint: str) -> None:
    p.add_argument("--checkpoint", default=default_checkpoint)
    p.add_argument("--n", type=int, default=4, help="digits test images, run as one batch (default 4)")
    p.add_argument("--network", default="lan", help=f"{' | '.join(network_names())} | a YAML path (default lan)")
    add_security_flags(p)
    p.add_argument("--threads", type=int, default=1, help="torch threads per party")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="write the charts as PNG")


def _add_profile_parser(sub: argparse._SubParsersAction, default_checkpoint: str) -> None:
    p = sub.add_parser("profile", help="per-node time, bytes and rounds of a secure run, with network estimates")
    _common(p, default_checkpoint)
    p.add_argument("--policy", help="rewrite the checkpoint's model by this policy first")
    p.add_argument("--csv", metavar="PATH", help="write the per-node records as CSV")
    p.add_argument("--top", type=int, default=10, help="nodes in the top table (default 10)")
    p.add_argument("--netem", action="store_true",
                   help="also run with each party in its own network namespace, the link shaped by --network "
                        "(tc netem, or a userspace delay line; root), and report measured next to estimated time")


def _add_compare_parser(sub: argparse._SubParsersAction, default_checkpoint: str) -> None:
    p = sub.add_parser("compare", help="profile several policies on one checkpoint; one table and one plot")
    _common(p, default_checkpoint)
    p.add_argument("--policies", required=True, help="comma-separated policy names or YAML paths")
    p.add_argument("--md", metavar="PATH", help="write the comparison as a markdown table")


def cmd_profile(a: argparse.Namespace, console: Console) -> int:
    from ..runtime.netem import unavailable_reason
    from .plots import plot_profile
    from .run import measure_under_netem, run_profile
    from .tables import profile_tables

    network = load_network(a.network)  # bad input fails before any party starts
    if a.netem and (reason := unavailable_reason()):
        raise UsageError(f"--netem: {reason}")
    with console.status(f"profiling {a.n} images under MPC ..."):
        report = run_profile(a.checkpoint, a.policy, a.n, network=network, **security_from_args(a), threads=a.threads)
    if a.netem:
        with console.status(f"measuring under netem ({network.name}) ..."):
            report.netem = measure_under_netem(a.checkpoint, a.policy, a.n, network, a.threads, **security_from_args(a))
    for table in profile_tables(report, a.top):
        console.print(table)
    t = report.totals
    console.print(f"total: {t['seconds']:.2f} s measured, {t['bytes_per_party'] / 1e6:.1f} MB and {t['rounds']} rounds "
                  f"per party; estimated {t['estimated_seconds']:.2f} s on {network.name} (online)")
    if "offline_seconds" in t:
        console.print(f"offline (the dealer's preprocessing): {t['offline_seconds']:.2f} s, "
                      f"{t['offline_bytes'] / 1e6:.1f} MB in {t['offline_messages']} messages; estimated "
                      f"{t['offline_estimated_seconds']:.2f} s on {network.name} · {t['truncated_elements']:,} elements "
                      "truncated")
        for reason in t["insecure"]:
            console.print(f"[yellow]insecure run: {reason}[/]")
    if report.truncation_risk:
        console.print(describe(report.truncation_risk))
    if report.netem:
        measured = report.netem["seconds"]
        console.print(f"measured in namespaces ({network.name}, {report.netem['shaper']}): {measured:.2f} s "
                      f"(estimate / measured = {t['estimated_seconds'] / measured:.2f})")
    if a.json:
        report.write_json(a.json)
    if a.csv:
        report.write_csv(a.csv)
    if a.plot:
        plot_profile(report, a.plot)
    return 0


def _markdown(rows: list[dict], network: str) -> str:
    lines = [f"| policy | s/image | MB/image | rounds (batch) | est. s/image ({network}) | images/s |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['policy']} | {r['seconds_per_image']:.2f} | {r['bytes_per_image'] / 1e6:.1f} | {r['rounds']} | "
              f"{r['estimated_seconds_per_image']:.2f} | {r['images_per_second']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def cmd_compare(a: argparse.Namespace, console: Console) -> int:
    from ..rewrite import load_policy
    from .plots import plot_comparison
    from .run import run_profile
    from .tables import comparison_table

    network = load_network(a.network)
    policies = [p.strip() for p in a.policies.split(",") if p.strip()]
    for name in policies:
        load_policy(name)  # every policy is valid before any party starts
    reports = []
    for name in policies:
        with console.status(f"profiling policy {name} ({a.n} images under MPC) ..."):
            reports.append(run_profile(a.checkpoint, name, a.n, network=network, **security_from_args(a),
                                       threads=a.threads))
    rows = [r.comparison_row() for r in reports]
    console.print(comparison_table(rows, network.name))
    if a.json:
        Path(a.json).write_text(json.dumps({"checkpoint": a.checkpoint, "network": network.to_dict(), "images": a.n,
                                            "policies": rows, "profiles": [r.to_dict() for r in reports]}, indent=1))
    if a.md:
        Path(a.md).write_text(_markdown(rows, network.name))
    if a.plot:
        plot_comparison(rows, network.name, a.plot)
    return 0


def _add_pareto_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="test accuracy against measured secure cost over checkpoints (Pareto front)")
    p.add_argument("checkpoints", nargs="+", help="checkpoint directories (each with a recorded test accuracy)")
    p.add_argument("--names", help="comma-separated labels (default: directory names)")
    p.add_argument("--n", type=int, default=1, help="digits test images profiled per checkpoint (default 1)")
    p.add_argument("--network", default="wan", help=f"{' | '.join(network_names())} | a YAML path (default wan)")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    p.add_argument("--md", metavar="PATH", help="write the rows as a markdown table")
    p.add_argument("--plot", metavar="PATH.png", help="write the accuracy/cost chart")


def cmd_pareto(a: argparse.Namespace, console: Console) -> int:
    from .plots import plot_tradeoff
    from .tradeoff import markdown, tradeoff_rows

    network = load_network(a.network)
    names = [s.strip() for s in a.names.split(",")] if a.names else None
    if names is not None and len(names) != len(a.checkpoints):
        raise UsageError(f"--names gives {len(names)} labels for {len(a.checkpoints)} checkpoints")
    with console.status(f"profiling {len(a.checkpoints)} checkpoints under MPC ..."):
        rows = tradeoff_rows(a.checkpoints, network, a.n, names)
    console.print(markdown(rows, network.name))
    if a.json:
        Path(a.json).write_text(json.dumps({"network": network.to_dict(), "images": a.n, "rows": rows}, indent=1) + "\n")
    if a.md:
        Path(a.md).write_text(markdown(rows, network.name))
    if a.plot:
        plot_tradeoff(rows, network.name, a.plot)
    return 0


def add_parsers(sub: argparse._SubParsersAction, default_checkpoint: str) -> None:
    """Add this group's commands (profile, compare, pareto) to ``sub``."""
    from ..console import console

    _add_profile_parser(sub, default_checkpoint)
    _add_compare_parser(sub, default_checkpoint)
    _add_pareto_parser(sub)
    handlers = {"profile": cmd_profile, "compare": cmd_compare, "pareto": cmd_pareto}
    for name, handler in handlers.items():
        sub.choices[name].set_defaults(func=lambda a, handler=handler: handler(a, console))
