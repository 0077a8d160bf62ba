"""Per-node wall time, bytes and rounds of a secure forward, as one party sees them.

:class:`Profiler` wraps every node of a :class:`~secvit.secure.plan.SecurePlan` (its
``hook``) and every marked sub-step inside a lowered module
(:func:`secvit.ops.region`). Scopes nest; each record keeps only its *own*
cost (its total minus its children's), so the records partition the run: their sums
equal the communicator's totals exactly. Costs of the same key accumulate over batches.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch.fx as fx

from protocols import backend

from ..ops import function_op, listening, method_op, module_op
from ..rewrite.graph import block_layers, layer_of
from ..secure.plan import SecurePlan

__all__ = ["KINDS", "NodeRecord", "Profiler"]

KINDS = ("linear", "matmul", "softmax", "activation", "norm", "other")


@dataclass
class NodeRecord:
    """Own cost of one node (or sub-step ``node/step``) for one party, summed over batches."""

    node: str
    module: str | None
    layer: int | None
    kind: str
    protocol: str | None
    seconds: float = 0.0
    bytes: int = 0
    rounds: int = 0
    calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Scope:
    key: str
    tags: dict[str, Any]
    start: tuple[float, int, int]
    children: list[float]


def _snapshot() -> tuple[float, int, int]:
    stats = backend.comm_stats()
    return time.perf_counter(), stats["bytes"], stats["rounds"]


class Profiler:
    """Records one party's per-node costs of ``plan``'s forward passes.

    Usage (inside a party)::

        profiler = Profiler(plan)
        with profiler.scope("input.share"):
            x = plan.encrypt_input(images, rank, shape)
        with profiler.active():
            y = plan(x, hook=profiler.hook)
        with profiler.scope("output.reveal"):
            logits = y.get_plain_text(dst=1)
    """

    def __init__(self, plan: SecurePlan):
        self.plan = plan
        self.blocks = block_layers(plan.model)
        self.records: dict[str, NodeRecord] = {}
        self._tags: dict[str, dict[str, Any]] = {}  # per node key, computed once
        self._stack: list[_Scope] = []

    def tags(self, prefix: str, node: fx.Node) -> dict[str, Any]:
        """Module path, layer index, op kind and protocol of a plan node."""
        module_path, protocol, kind = None, None, "other"
        if node.op == "call_module":
            module_path = prefix + str(node.target)
            module = self.plan.graph_module.get_submodule(module_path)
            op = module_op(module)
            kind = "other" if op.kind == "attention" else op.kind  # its own sub-steps carry the kinds
            protocol = op.protocol(module)
        elif node.op in ("call_function", "call_method"):
            op = function_op(node.target) if node.op == "call_function" else method_op(node.target)
            kind = op.kind if op else "other"
        else:
            return {"module": None, "layer": None, "kind": kind, "protocol": protocol}
        if module_path is None:  # a function inside a module: the innermost module it runs in
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            module_path = prefix + stack[-1][0] if stack else (prefix.rstrip(".") or None)
        return {"module": module_path, "layer": layer_of(module_path, self.blocks) if module_path else None,
                "kind": kind, "protocol": protocol}

    @contextlib.contextmanager
    def scope(self, key: str, kind: str = "other", protocol: str | None = None, module: str | None = None,
              layer: int | None = None) -> Iterator[None]:
        """Charge the enclosed work (minus nested scopes) to record ``key``."""
        self._stack.append(_Scope(key, {"module": module, "layer": layer, "kind": kind, "protocol": protocol},
                                  _snapshot(), [0.0, 0, 0]))
        try:
            yield
        finally:
            scope = self._stack.pop()
            end = _snapshot()
            total = [end[i] - scope.start[i] for i in range(3)]
            own = [total[i] - scope.children[i] for i in range(3)]
            record = self.records.setdefault(scope.key, NodeRecord(scope.key, **scope.tags))
            record.seconds += own[0]
            record.bytes += int(own[1])
            record.rounds += int(own[2])
            record.calls += 1
            if self._stack:
                parent = self._stack[-1].children
                for i in range(3):
                    parent[i] += total[i]

    def hook(self, prefix: str, node: fx.Node, run: Callable[[], Any]) -> Any:
        """:class:`SecurePlan` node hook."""
        key = prefix.replace(".", "/") + node.name if prefix else node.name
        if key not in self._tags:
            self._tags[key] = self.tags(prefix, node)
        with self.scope(key, **self._tags[key]):
            return run()

    def _region(self, name: str, kind: str, protocol: str | None):
        parent = self._stack[-1]
        tags = {**parent.tags, "kind": kind, "protocol": protocol}
        return self.scope(f"{parent.key}/{name}", **tags)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Send the lowered modules' sub-steps to this profiler."""
        with listening(self._region):
            yield

    def to_list(self) -> list[dict[str, Any]]:
        """Records in first-run order."""
        return [r.to_dict() for r in self.records.values()]
