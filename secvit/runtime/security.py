"""The two insecure options a user can ask for, spelled out on every command that runs parties.

By default every session has a dealer process and exact truncation. ``--insecure-tfp``
lets party 0 deal instead (it can then unmask every opening: benchmarks only);
``--insecure-local-truncation`` uses CrypTen's local truncation (each element fails with
probability |x| / 2^64). Reports of such runs say so (``insecure``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_security_flags", "party_flags", "security_from_args"]


def add_security_flags(p: argparse.ArgumentParser) -> None:
    """Add ``--insecure-tfp`` and ``--insecure-local-truncation`` to a parser."""
    p.add_argument("--insecure-tfp", action="store_true",
                   help="party 0 deals the correlated randomness instead of a dealer process: party 0 can read the "
                        "client's images (benchmarks only)")
    p.add_argument("--insecure-local-truncation", action="store_true",
                   help="truncate shares locally (CrypTen's): each element fails with probability |x| / 2^64")


def security_from_args(a: argparse.Namespace) -> dict[str, str]:
    """``provider`` and ``truncation`` of a session from the parsed flags."""
    return {"provider": "TFP" if a.insecure_tfp else "dealer",
            "truncation": "local" if a.insecure_local_truncation else "exact"}


def party_flags(provider: str, truncation: str) -> list[str]:
    """The ``secvit party`` flags of a session's security choices."""
    return [*(["--insecure-tfp"] if provider == "TFP" else []),
            *(["--insecure-local-truncation"] if truncation == "local" else [])]
