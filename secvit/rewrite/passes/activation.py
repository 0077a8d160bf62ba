"""Pass: ``nn.GELU`` -> :class:`MPCActivation` with the policy's activation protocol;
``nn.SiLU`` and ``nn.Hardswish`` -> their exact protocols under every policy (a policy
chooses GELU's replacement)."""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from ...mpc_modules import MPCActivation
from ..graph import modules_of, set_submodule
from .base import PassContext, PassResult

__all__ = ["replace_activation"]


EXACT_ACTIVATIONS = {nn.SiLU: "silu.exact", nn.Hardswish: "hardswish.exact"}


def replace_activation(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_activation")
    for path, _ in modules_of(gm, nn.GELU):
        protocol = ctx.policy.activation.choose(path, ctx.layer(path))[0]
        set_submodule(gm, path, MPCActivation(protocol))
        result.record(path, protocol)
    for module_type, protocol in EXACT_ACTIVATIONS.items():
        for path, _ in modules_of(gm, module_type):
            set_submodule(gm, path, MPCActivation(protocol))
            result.record(path, protocol)
    return result
