"""``secvit supernet train``, ``search`` and ``front`` (:mod:`secvit.supernet.run`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from ..commands import add_threads

__all__ = ["add_parsers"]


def cmd_supernet_train(a: argparse.Namespace, console: Console) -> int:
    from .run import train_supernet

    meta = train_supernet(a.model, a.data, a.out, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                          pool_size=a.pool, bins=a.bins, explore=a.explore, seed=a.seed, resume=a.resume,
                          threads=a.threads)
    pool = meta["supernet"]["pool"]
    rounds = [p["rounds"] for p in pool]
    mb = [p["bytes"] / 1e6 for p in pool]
    console.print(f"wrote {a.out}: largest subnet {meta['test_accuracy']:.4f} on {meta['test_images']} test images; "
                  f"pool of {len(pool)} subnets, {min(rounds)}-{max(rounds)} rounds, {min(mb):.1f}-{max(mb):.1f} MB")
    return 0


def cmd_supernet_search(a: argparse.Namespace, console: Console) -> int:
    from .run import search_supernet

    meta = search_supernet(a.supernet, a.out, max_rounds=a.max_rounds, max_mb=a.max_mb, epochs=a.epochs, lr=a.lr,
                           from_scratch=a.from_scratch, threads=a.threads)
    found = meta["supernet"]
    console.print(f"wrote {a.out}: {found['name']} ({found['rounds']} rounds, {found['bytes'] / 1e6:.1f} MB per party "
                  f"and image), held-out {found['validation_accuracy']:.4f}, test {meta['test_accuracy']:.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps(meta, indent=2) + "\n")
    return 0


def cmd_supernet_front(a: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from .run import supernet_front

    front = supernet_front(a.supernet, a.points)
    table = Table(title=f"{a.supernet}: the pool's Pareto front (held-out accuracy against rounds)")
    for column in ("subnet", "rounds", "MB", "held-out", "chosen"):
        table.add_column(column, justify="left" if column == "subnet" else "right")
    for r in front:
        table.add_row(r["name"], str(r["rounds"]), f"{r['bytes'] / 1e6:.1f}", f"{r['validation_accuracy']:.2%}",
                      "yes" if r["chosen"] else "")
    console.print(table)
    if a.json:
        Path(a.json).write_text(json.dumps(front, indent=2) + "\n")
    return 0


def add_parsers(sub: argparse._SubParsersAction, default_checkpoint: str) -> None:
    """Add ``supernet`` with its ``train``, ``search`` and ``front`` subcommands to ``sub``."""
    console = Console()
    group = sub.add_parser("supernet", help="an MPC-budget supernet (ElasticViT, secure cost as the complexity)")
    commands = group.add_subparsers(dest="supernet_command", required=True)
    p = commands.add_parser("train", help="train a supernet over depth, width, heads, MLP ratio and attention")
    p.add_argument("--model", default="vit_lite_7_4_32", help="a built-in ViT-Lite: the largest subnet")
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pool", type=int, default=64, help="subnets whose secure cost is measured (default 64)")
    p.add_argument("--bins", type=int, default=6, help="complexity bins the sampler walks across (default 6)")
    p.add_argument("--explore", type=float, default=0.5,
                   help="share of steps drawing a random subnet of the bin instead of one of its bank (0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="supernet checkpoint directory to write")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run from its last completed epoch (same options; same final weights)")
    add_threads(p)
    p.set_defaults(func=lambda a: cmd_supernet_train(a, console))
    p = commands.add_parser("search", help="extract the most accurate subnet within a secure budget")
    p.add_argument("--supernet", required=True, metavar="CHECKPOINT", help="written by secvit supernet train")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-rounds", type=int, metavar="R", help="rounds per forward pass")
    budget.add_argument("--max-mb", type=float, metavar="M", help="MB per party and image")
    p.add_argument("--epochs", type=int, default=0, help="fine-tune the extracted subnet this many epochs (0)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--from-scratch", action="store_true",
                   help="train the found architecture from a fresh initialisation for --epochs instead of inheriting "
                        "the supernet's weights (the per-budget baseline)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--json", help="also write the checkpoint's meta.json here")
    add_threads(p)
    p.set_defaults(func=lambda a: cmd_supernet_search(a, console))
    p = commands.add_parser("front", help="the pool's Pareto front on held-out images: the budgets worth searching")
    p.add_argument("--supernet", required=True, metavar="CHECKPOINT", help="written by secvit supernet train")
    p.add_argument("--points", type=int, default=4, help="members to choose, spread along the front (default 4)")
    p.add_argument("--json", help="write the front (each member's subnet, rounds, bytes, accuracy, chosen) here")
    p.set_defaults(func=lambda a: cmd_supernet_front(a, console))
