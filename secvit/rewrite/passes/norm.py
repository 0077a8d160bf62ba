"""Pass: ``nn.LayerNorm`` (and timm's channels-first ``LayerNorm2d``) -> :class:`MPCNorm`
with the policy's norm protocol."""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn
from timm.layers import LayerNorm2d

from ...mpc_modules import MPCNorm
from ..graph import modules_of, set_submodule
from .base import PassContext, PassResult

__all__ = ["replace_norm"]


def replace_norm(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_norm")
    for path, norm in modules_of(gm, nn.LayerNorm):
        if len(norm.normalized_shape) != 1:
            continue
        protocol = ctx.policy.norm.choose(path, ctx.layer(path))[0]
        set_submodule(gm, path, MPCNorm(norm, protocol, channels_first=isinstance(norm, LayerNorm2d)))
        result.record(path, protocol)
    return result
