"""Session agreement: before any secret is shared, every process checks that all of them
run the same settings, architecture, policy, batch size and package versions.

Each process hashes each field (SHA-256 of its canonical JSON) and the digests are
gathered as one fixed-size int64 tensor per process. A mismatch stops every process with
a message naming the field and the processes that differ (otherwise it would give wrong
logits or a hang). The dealer knows only the settings and versions: its other fields are
all-zero digests, compared with nobody.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

import torch

from .roles import role_name
from ..errors import SecvitError

__all__ = ["FIELDS", "SessionMismatch", "check_agreement", "digest_table", "versions"]

FIELDS = ("settings", "versions", "architecture (meta.json)", "policy", "batch size")
_WORDS = 4  # 32 bytes of SHA-256 as int64 words


class SessionMismatch(SecvitError, RuntimeError):
    """The processes of a session do not agree on something they must share."""


def versions() -> dict[str, str]:
    """The package versions that change what a party computes."""
    from protocols.backend import crypten

    from .. import __version__

    return {"secvit": __version__, "torch": torch.__version__, "crypten": crypten.__version__,
            "python": ".".join(platform.python_version_tuple()[:2])}


def _canonical(value: Any) -> bytes:
    if is_dataclass(value):
        value = asdict(value)
    return json.dumps(value, sort_keys=True, default=str).encode()


def digest_table(fields: dict[str, Any]) -> torch.Tensor:
    """A ``(len(FIELDS), 4)`` int64 table of the digests of ``fields`` (a field missing
    from ``fields`` is all zero: not known to this process)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise KeyError(f"unknown agreement fields {sorted(unknown)}; expected {FIELDS}")
    table = torch.zeros(len(FIELDS), _WORDS, dtype=torch.int64)
    for i, name in enumerate(FIELDS):
        if name in fields:
            digest = hashlib.sha256(_canonical(fields[name])).digest()
            table[i] = torch.frombuffer(bytearray(digest), dtype=torch.int64)
    return table


def check_agreement(fields: dict[str, Any], gather: Callable[[torch.Tensor], list[torch.Tensor]],
                    world_size: int) -> None:
    """Gather every process's digests (``gather``: one table per rank, by rank) and stop
    on the first field two processes know and disagree on.

    Raises:
        SessionMismatch: naming the field and the two processes.
    """
    tables = gather(digest_table(fields))
    for i, name in enumerate(FIELDS):
        known = [(rank, t[i]) for rank, t in enumerate(tables) if t.shape == (len(FIELDS), _WORDS) and t[i].any()]
        for rank, digest in known[1:]:
            if not torch.equal(digest, known[0][1]):
                raise SessionMismatch(f"mismatch in the session's {name} between {role_name(known[0][0], world_size)} "
                                      f"and {role_name(rank, world_size)}")
