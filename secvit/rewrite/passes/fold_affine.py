"""Pass: fold a norm's per-channel affine into the Linear layers that read it (exact).

After Li et al., RepQ-ViT (ICCV 2023): y = (x_hat * g + b) W^T + c = x_hat (W diag g)^T
+ (W b + c). The norm keeps only its normalisation, and the secure graph loses one
elementwise product by a secret per norm. Applies when every user of the norm's output
is a Linear or an :class:`MPCAttention` (folded into its ``qkv``).
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from ...mpc_modules import MPCAttention, MPCNorm
from .base import PassContext, PassResult

__all__ = ["fold_norm_affine"]


def _consumer_linear(gm: fx.GraphModule, user: fx.Node) -> nn.Linear | None:
    if user.op != "call_module":
        return None
    m = gm.get_submodule(user.target)
    if isinstance(m, MPCAttention):
        return m.qkv
    return m if isinstance(m, nn.Linear) else None


@torch.no_grad()
def fold_norm_affine(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("fold_norm_affine")
    if not ctx.policy.fold_affine:
        return result
    for node in gm.graph.nodes:
        norm = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(norm, MPCNorm) or norm.weight is None:
            continue
        linears = [_consumer_linear(gm, u) for u in node.users]
        if not linears or any(lin is None for lin in linears):
            continue
        gamma, beta = norm.weight.detach(), norm.bias.detach() if norm.bias is not None else None
        for lin in linears:
            shift = lin.weight @ beta if beta is not None else torch.zeros(lin.out_features)
            lin.weight.mul_(gamma)
            if lin.bias is None:
                lin.bias = nn.Parameter(shift.clone())
            else:
                lin.bias.add_(shift)
        norm.weight, norm.bias = None, None
        result.record(node.target, f"into {', '.join(str(u.target) for u in node.users)}")
    return result
