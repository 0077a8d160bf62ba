"""``secvit`` command line. The commands live in groups, each adding its own parsers:
:mod:`secvit.commands.plaintext` (train, cache-logits, models, rewrite, inherit, compress,
search, pipeline), :mod:`secvit.commands.sessions` (party, keys, demo, infer, check,
protocols), :mod:`secvit.profile.commands` (profile, compare, pareto) and
:mod:`secvit.supernet.commands` (supernet train, supernet search)."""

from __future__ import annotations

import argparse
import sys

from .checkpoint import DEFAULT_CHECKPOINT
from .commands import plaintext, sessions
from .errors import SecvitError
from .profile import commands as profile_commands
from .supernet import commands as supernet_commands

__all__ = ["DEFAULT_CHECKPOINT", "main", "main_exit"]

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``secvit`` parser: each command group adds its commands (``func`` runs one)."""
    parser = argparse.ArgumentParser(prog="secvit", description="Secure (MPC) inference for Vision Transformers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (plaintext, sessions, profile_commands, supernet_commands):
        group.add_parsers(sub, DEFAULT_CHECKPOINT)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code: 2 for a user error (one line, before any secret is
    shared), 1 when a party failed; any other exception is a bug and shows its traceback."""
    from protocols.mpc_runtime.channels import ChannelError

    from .runtime.launcher import PartyFailure

    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except SecvitError as e:
        print(f"secvit: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PartyFailure as e:
        print(f"secvit: a party failed: {e}", file=sys.stderr)
        return 1
    except ChannelError as e:  # a malformed, oversized or missing frame: the session cannot go on
        print(f"secvit: error: {e}", file=sys.stderr)
        return 1


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
