"""The ``secvit`` subcommands' implementations (the parser is :mod:`secvit.cli`): each
``cmd_*`` takes the parsed arguments and returns the exit code."""

from rich.console import Console

console = Console()
