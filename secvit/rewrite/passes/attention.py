"""Pass: timm ``Attention`` -> :class:`MPCAttention` with one softmax protocol per head."""

from __future__ import annotations

import torch.fx as fx
from timm.layers import Attention

from ...mpc_modules import MPCAttention
from ..graph import set_submodule
from .base import PassContext, PassResult

__all__ = ["replace_attention"]


def replace_attention(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_attention")
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), Attention):
            attn = gm.get_submodule(node.target)
            heads = ctx.policy.attention.choose(node.target, ctx.layer(node.target), attn.num_heads)
            set_submodule(gm, node.target, MPCAttention(attn, heads))
            result.record(node.target, ", ".join(heads) if len(set(heads)) > 1 else heads[0])
    return result
