"""The op table: what secvit knows about each module type, function and method, in one place.

Each entry is registered beside the op's definition (secvit's MPC modules in
:mod:`secvit.mpc_modules`, torch's and timm's in :mod:`secvit.ops.builtin`) and read by
everyone else: the tracer (which modules stay one node), the secure plan (how a node runs
on secrets: CrypTensors under MPC, fixed-point tensors in emulation, the same code), the
rewriter's graph view and the profiler (the op's kind and protocol).

A module entry's ``secure`` is ``secure(module, secrets, *args, **kwargs)``, where
``secrets`` holds the encrypted tensors its ``prepare(module)`` named (the model owner's
weights); a function or method entry's is ``secure(*args, **kwargs)``, and a method
without one runs as the secret's own method. An op the secure engine does not run says
why in ``refused`` (e.g. a plain LayerNorm: the secure plan rewrites it first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn

__all__ = ["KINDS", "Op", "UnsupportedOpError", "function_op", "kind_of", "leaf_types", "method_op", "module_op",
           "node_kind", "own_tensors", "register_function", "register_method", "register_module"]

KINDS = ("attention", "linear", "matmul", "softmax", "activation", "norm", "other")


class UnsupportedOpError(TypeError):
    """The graph holds an operation the secure engine cannot run."""


def own_tensors(m: nn.Module) -> dict[str, torch.Tensor]:
    """A module's direct parameters (its secret weights), e.g. ``weight`` and ``bias``."""
    return {k: v.detach() for k, v in m.named_parameters(recurse=False)}


def _no_secrets(m: nn.Module) -> dict[str, torch.Tensor]:
    return {}


@dataclass(frozen=True, kw_only=True)
class Op:
    """One table entry (fields by keyword only).

    Attributes:
        name: The type's, function's or method's name (for messages).
        kind: One of :data:`KINDS`.
        secure: How it runs on secrets (see the module docstring); None with ``refused``.
        refused: Why the secure engine does not run it, and what to do instead.
        refuses: Modules: why the secure engine does not run this instance (its
            configuration), or None when it does.
        prepare: Modules: the owner's secret tensors, by name (run by every party; on the
            client over ``meta`` tensors, which yields shapes without values).
        protocol: Modules: the registry protocol it runs, if one.
        per_shape: Modules: traced again at each input shape (shape-dependent Python
            branches), its inner modules being the leaves.
        stationary: Modules: the names of prepared secrets that only ever enter products
            as their fixed right operand (weights): they get fixed Beaver masks at load
            (:mod:`protocols.stationary`), so each product reveals only the activation, masked,
            to the owner.
    """

    name: str
    kind: str = "other"
    secure: Callable[..., Any] | None = None
    refused: str | None = None
    refuses: Callable[[nn.Module], str | None] = field(default=lambda m: None)
    prepare: Callable[[nn.Module], dict[str, torch.Tensor]] = field(default=_no_secrets)
    protocol: Callable[[nn.Module], str | None] = field(default=lambda m: None)
    per_shape: bool = False
    stationary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"op {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

    def check(self, where: str) -> None:
        """Raises :class:`UnsupportedOpError` (naming ``where``) if the op is refused."""
        if self.refused:
            raise UnsupportedOpError(f"{where}: {self.name} {self.refused}")


_MODULES: dict[type[nn.Module], Op] = {}
_FUNCTIONS: dict[Any, Op] = {}
_METHODS: dict[str, Op] = {}


def _register(table: dict, keys: tuple, name: str, fields: dict[str, Any]) -> Callable | None:
    """Register ``keys`` at once when ``fields`` say how the op runs (``secure``) or why
    it does not (``refused``); otherwise return a decorator whose function is ``secure``."""
    def add(secure: Callable[..., Any] | None) -> Callable[..., Any] | None:
        op = Op(name=name, **({"secure": secure} if secure is not None else {}), **fields)
        for key in keys:
            if key in table:
                raise ValueError(f"op {key!r} is already registered")
            table[key] = op
        return secure

    if "secure" in fields or "refused" in fields:
        add(None)
        return None
    return add


def register_module(*types: type[nn.Module], **fields: Any) -> Callable | None:
    """Register module ``types`` (a decorator of their ``secure``, or at once: see :func:`_register`)."""
    return _register(_MODULES, types, types[0].__name__, fields)


def register_function(*targets: Any, **fields: Any) -> Callable | None:
    """Register functions (``torch.cat``, ``operator.matmul``, ...) like :func:`register_module`."""
    return _register(_FUNCTIONS, targets, getattr(targets[0], "__name__", str(targets[0])), fields)


def register_method(*names: str, **fields: Any) -> Callable | None:
    """Register tensor methods by name like :func:`register_module`."""
    return _register(_METHODS, names, f".{names[0]}()", fields)


def module_op(m: nn.Module) -> Op | None:
    """The entry of ``type(m)`` or of its nearest registered base class."""
    return next((_MODULES[cls] for cls in type(m).__mro__ if cls in _MODULES), None)


def function_op(target: Any) -> Op | None:
    return _FUNCTIONS.get(target)


def method_op(name: str) -> Op | None:
    return _METHODS.get(name)


def leaf_types() -> tuple[type[nn.Module], ...]:
    """Every registered module type: each is one node of a traced graph."""
    return tuple(_MODULES)


def kind_of(m: nn.Module) -> str:
    """A module's kind (``other`` when unregistered)."""
    op = module_op(m)
    return op.kind if op else "other"


def node_kind(gm: fx.GraphModule, node: fx.Node) -> str:
    """The kind of a graph node: its module's, function's or method's."""
    if node.op == "call_module":
        return kind_of(gm.get_submodule(node.target))
    op = function_op(node.target) if node.op == "call_function" else method_op(node.target) if node.op == "call_method" else None
    return op.kind if op else "other"
