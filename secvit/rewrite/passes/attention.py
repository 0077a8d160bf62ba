"""Pass: timm's attentions (ViT/DeiT ``Attention``, TinyViT's window ``Attention``) ->
:class:`MPCAttention` with one softmax protocol per head."""

from __future__ import annotations

import torch.fx as fx
from timm.layers import Attention
from timm.models.tiny_vit import Attention as TinyVitAttention

from ...mpc_modules import MPCAttention
from ..graph import modules_of, set_submodule
from .base import PassContext, PassResult

__all__ = ["ATTENTION_TYPES", "replace_attention"]

ATTENTION_TYPES = (Attention, TinyVitAttention)
"""The timm attentions this pass replaces by :class:`MPCAttention`."""


def replace_attention(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_attention")
    for path, attn in modules_of(gm, ATTENTION_TYPES):
        heads = ctx.policy.attention.choose(path, ctx.layer(path), attn.num_heads)
        set_submodule(gm, path, MPCAttention(attn, heads))
        result.record(path, ", ".join(heads) if len(set(heads)) > 1 else heads[0])
    return result
