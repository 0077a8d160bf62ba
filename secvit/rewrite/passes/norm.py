"""Pass: ``nn.LayerNorm`` -> :class:`MPCNorm` with the policy's norm protocol."""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from ...mpc_modules import MPCNorm
from ..graph import set_submodule
from .base import PassContext, PassResult

__all__ = ["replace_norm"]


def replace_norm(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_norm")
    for node in gm.graph.nodes:
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
            protocol = ctx.policy.norm.choose(node.target, ctx.layer(node.target))[0]
            set_submodule(gm, node.target, MPCNorm(module, protocol))
            result.record(node.target, protocol)
    return result
