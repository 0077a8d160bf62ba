"""torch.fx tracing with the layers the secure engine lowers kept as leaf modules."""

from __future__ import annotations

import inspect

import torch.fx as fx
import torch.nn as nn

__all__ = ["LEAF_TYPES", "trace"]

LEAF_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.LayerNorm,
    nn.GELU,
    nn.ReLU,
    nn.Dropout,
    nn.Identity,
    nn.BatchNorm2d,
)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` with its first forward argument symbolic and the rest at their defaults.

    LayerNorm subclasses (timm's included), Linear, Conv2d, GELU, Dropout, Identity and
    BatchNorm2d stay single ``call_module`` nodes, so that passes and the secure
    lowering see them whole.
    """
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    graph = _Tracer().trace(model, concrete_args=concrete or None)
    return fx.GraphModule(model, graph, model.__class__.__name__)
