"""torch.fx tracing with the layers the secure engine lowers kept as leaf modules."""

from __future__ import annotations

import inspect

import torch.fx as fx
import torch.nn as nn

from ..mpc_modules import MPCActivation, MPCAttention, MPCNorm

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
    MPCAttention,
    MPCActivation,
    MPCNorm,
)


class _Tracer(fx.Tracer):
    def __init__(self, leaves: tuple[type[nn.Module], ...]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, extra_leaves: tuple[type[nn.Module], ...] = ()) -> fx.GraphModule:
    """Trace ``model`` with its first forward argument symbolic and the rest at their defaults.

    LayerNorm subclasses (timm's included), Linear, Conv2d, GELU, Dropout, Identity and
    BatchNorm2d and the MPC modules stay single ``call_module`` nodes, so that passes
    and the secure lowering see them whole; ``extra_leaves`` adds types (the rewriter
    keeps timm's ``Attention`` whole to replace it).
    """
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    graph = _Tracer(LEAF_TYPES + extra_leaves).trace(model, concrete_args=concrete or None)
    return fx.GraphModule(model, graph, model.__class__.__name__)
