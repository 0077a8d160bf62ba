"""Pass: ``nn.GELU`` -> :class:`MPCActivation` with the policy's activation protocol."""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from ...mpc_modules import MPCActivation
from ..graph import set_submodule
from .base import PassContext, PassResult

__all__ = ["replace_activation"]


def replace_activation(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_activation")
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.GELU):
            protocol = ctx.policy.activation.choose(node.target, ctx.layer(node.target))[0]
            set_submodule(gm, node.target, MPCActivation(protocol))
            result.record(node.target, protocol)
    return result
