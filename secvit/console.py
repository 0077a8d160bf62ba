"""The terminal every command prints its tables to (one ``rich`` console)."""

from rich.console import Console

__all__ = ["console"]

console = Console()
