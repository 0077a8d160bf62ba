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
from timm.layers import Attention
from timm.models.tiny_vit import Attention as TinyVitAttention
from timm.models.tiny_vit import TinyVitBlock
from torch.fx.experimental.meta_tracer import MetaTracer

from .mpc_modules import MPCActivation, MPCAttention, MPCNorm

__all__ = ["ATTENTION_TYPES", "LEAF_TYPES", "NEEDS_REWRITE", "SHAPE_SPECIALISED", "TraceError", "leaf_modules", "trace", "trace_at"]

LEAF_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.LayerNorm,
    nn.GELU,
    nn.ReLU,
    nn.Dropout,
    nn.Identity,
    nn.BatchNorm2d,
    MPCAttention,
    MPCActivation,
    MPCNorm,
)

SHAPE_SPECIALISED: tuple[type[nn.Module], ...] = (TinyVitBlock,)

ATTENTION_TYPES: tuple[type[nn.Module], ...] = (Attention, TinyVitAttention)
"""The timm attentions the rewriter replaces by :class:`MPCAttention`."""

NEEDS_REWRITE: tuple[type[nn.Module], ...] = (TinyVitAttention,)
"""Modules the secure engine runs only after the rewriter replaced them."""


class TraceError(RuntimeError):
    """A module cannot be traced at the given shape."""


class _Tracer(fx.Tracer):
    def __init__(self, leaves: tuple[type[nn.Module], ...]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


class _ShapeTracer(MetaTracer):
    """Traces with ``meta`` tensors flowing beside the proxies, so ``x.shape`` is concrete.

    A leaf's meta output comes from running its forward on meta tensors; the submodules
    it calls then run as they are, not as new graph nodes.
    """

    _in_leaf = False

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, qualname)

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


def leaf_modules(module: nn.Module, leaves: tuple[type[nn.Module], ...] = LEAF_TYPES,
                 prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """``(path, module)`` of the leaves inside ``module``, not descending into a leaf."""
    for name, child in module.named_children():
        if isinstance(child, leaves):
            yield prefix + name, child
        else:
            yield from leaf_modules(child, leaves, f"{prefix}{name}.")


def trace(model: nn.Module, extra_leaves: tuple[type[nn.Module], ...] = ()) -> fx.GraphModule:
    """Trace ``model`` with its first forward argument symbolic and the rest at their defaults.

    LayerNorm subclasses (timm's included), Linear, Conv2d, GELU, Dropout, Identity and
    BatchNorm2d, the MPC modules and the :data:`SHAPE_SPECIALISED` blocks stay single
    ``call_module`` nodes, so that passes and the secure lowering see them whole;
    ``extra_leaves`` adds types (the rewriter keeps timm's attentions whole to replace them).
    """
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    graph = _Tracer(LEAF_TYPES + SHAPE_SPECIALISED + extra_leaves).trace(model, concrete_args=concrete or None)
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
