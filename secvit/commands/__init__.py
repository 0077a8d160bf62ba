"""The ``secvit`` command groups: each module adds its commands' parsers
(``add_parsers``) and implements them (each ``cmd_*`` takes the parsed arguments and
returns the exit code)."""

import argparse

from ..console import console

__all__ = ["add_threads", "console"]


def add_threads(p: argparse.ArgumentParser) -> None:
    """Add ``--threads`` (torch threads of a training run) to ``p``."""
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (default 2; 1 lets two runs share a 2-core machine without stalling)")
