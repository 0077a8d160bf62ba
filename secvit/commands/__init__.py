"""The ``secvit`` command groups: each module adds its commands' parsers
(``add_parsers``) and implements them (each ``cmd_*`` takes the parsed arguments and
returns the exit code)."""

from ..console import console

__all__ = ["console"]
