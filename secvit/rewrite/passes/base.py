"""What every pass takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import layer_of
from ..policy import Policy

__all__ = ["PassContext", "PassResult"]


@dataclass
class PassContext:
    """The policy and the model's block paths (for layer indices)."""

    policy: Policy
    blocks: list[str]

    def layer(self, path: str) -> int | None:
        return layer_of(path, self.blocks)


@dataclass
class PassResult:
    """What a pass changed: ``(module path, what it became)`` pairs."""

    name: str
    changes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def record(self, path: str, what: str) -> None:
        self.changes.append((path, what))
