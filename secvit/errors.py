"""User errors: what the command line reports in one line, with exit code 2.

Anything a user can get wrong (an argument, a file, a data set, a policy, a checkpoint,
an address, a key) raises a :class:`SecvitError`, before any secret is shared. Any other
exception is a bug: the command line lets its traceback show.
"""

from __future__ import annotations

__all__ = ["SecvitError", "UnknownNameError", "UsageError"]


class SecvitError(Exception):
    """Base of every user error."""


class UsageError(SecvitError, ValueError):
    """An argument, file or data set that cannot be used as given."""


class UnknownNameError(SecvitError, KeyError):
    """A name (model, protocol) that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
