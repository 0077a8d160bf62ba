"""torch.fx tracing with the layers the secure engine lowers kept as leaf modules.

Most models trace once for every input shape. Some blocks branch on their input's shape
in Python (timm's ``TinyVitBlock`` pads and partitions windows only when the feature map
is not one window): they stay single leaf nodes in the model's graph, and
:func:`trace_at` traces each of them at the concrete shape it is called with, which every
party knows (shapes are public in MPC).
"""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import Iterator

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.experimental.meta_tracer import MetaTracer

from . import mpc_modules  # noqa: F401  (registers the MPC modules' ops)
from .ops import leaf_types, module_op

__all__ = ["TraceError", "leaf_modules", "trace", "trace_at", "traced_per_shape"]


def traced_per_shape(m: nn.Module) -> bool:
    """Whether ``m`` is a block traced again at each input shape (op table: ``per_shape``)."""
    op = module_op(m)
    return bool(op and op.per_shape)


class TraceError(RuntimeError):
    """A module cannot be traced at the given shape."""


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, leaf_types()) or super().is_leaf_module(m, qualname)


class _ShapeTracer(MetaTracer):
    """Traces with ``meta`` tensors flowing beside the proxies, so ``x.shape`` is concrete.

    A leaf's meta output comes from running its forward on meta tensors; the submodules
    it calls then run as they are, not as new graph nodes.
    """

    _in_leaf = False

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, leaf_types()) or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if self._in_leaf:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def create_proxy(self, kind, target, args, kwargs, *rest, **options):
        self._in_leaf = kind == "call_module"
        try:
            return super().create_proxy(kind, target, args, kwargs, *rest, **options)
        finally:
            self._in_leaf = False


def leaf_modules(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """``(path, module)`` of the leaves (the op table's module types) inside ``module``,
    not descending into a leaf."""
    for name, child in module.named_children():
        if isinstance(child, leaf_types()):
            yield prefix + name, child
        else:
            yield from leaf_modules(child, f"{prefix}{name}.")


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` with its first forward argument symbolic and the rest at their defaults.

    Every module type of the op table (:mod:`secvit.ops`: Linear, Conv2d, LayerNorm and
    its subclasses, GELU, timm's attentions, the MPC modules, the blocks traced per
    shape, ...) stays a single ``call_module`` node, so that the passes and the secure
    plan see it whole.
    """
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    graph = _Tracer().trace(model, concrete_args=concrete or None)
    if isinstance(model, fx.GraphModule):  # its code is flat: the calls keep the modules they were made in
        stacks = {(n.name, n.target): n.meta["nn_module_stack"] for n in model.graph.nodes
                  if n.meta.get("nn_module_stack")}
        for node in graph.nodes:
            if node.op in ("call_function", "call_method") and not node.meta.get("nn_module_stack"):
                node.meta["nn_module_stack"] = stacks.get((node.name, node.target), {})
    return fx.GraphModule(model, graph, model.__class__.__name__)


def trace_at(module: nn.Module, shape: torch.Size | tuple[int, ...]) -> fx.GraphModule:
    """Trace ``module`` for inputs of exactly ``shape``: shape-dependent branches resolved.

    Raises:
        TraceError: some operation could not be evaluated on ``meta`` tensors.
    """
    skeleton = copy.deepcopy(module).to("meta")  # same paths, no values: the graph refers to ``module``
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MetaTracer only warns when shapes are lost
        try:
            graph = _ShapeTracer().trace(skeleton, meta_args={"x": torch.empty(shape, device="meta")})
        except (UserWarning, RuntimeError, TypeError) as e:
            raise TraceError(f"cannot trace {type(module).__name__} at shape {tuple(shape)}: {e}") from e
    return fx.GraphModule(module, graph, f"{type(module).__name__}_{'x'.join(map(str, shape))}")
