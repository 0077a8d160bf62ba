"""Pass: fold a norm's per-channel affine into the Linear layers that read it (exact).

After Li et al., RepQ-ViT (ICCV 2023): y = (x_hat * g + b) W^T + c = x_hat (W diag g)^T
+ (W b + c). The norm keeps only its normalisation, and the secure graph loses one
elementwise product by a secret per norm. Applies when every user of the norm's output
is a Linear or an :class:`MPCAttention` (folded into its ``qkv``), and inside modules
whose norm feeds one Linear by construction (:data:`INTERNAL`: TinyViT's attention
``pre_norm`` and ``NormMlp``, which live in blocks traced per shape).
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
from timm.models.tiny_vit import NormMlp

from ...mpc_modules import MPCAttention, MPCNorm
from ..graph import modules_of
from .base import PassContext, PassResult

__all__ = ["INTERNAL", "fold_norm_affine"]

INTERNAL: tuple[tuple[type[nn.Module], str, str], ...] = (
    (MPCAttention, "pre_norm", "qkv"),
    (NormMlp, "norm", "fc1"),
)


def _consumer_linear(gm: fx.GraphModule, user: fx.Node) -> nn.Linear | None:
    if user.op != "call_module":
        return None
    m = gm.get_submodule(user.target)
    if isinstance(m, MPCAttention):
        return m.qkv
    return m if isinstance(m, nn.Linear) else None


def _fold(norm: MPCNorm, linears: list[nn.Linear]) -> None:
    gamma, beta = norm.weight.detach(), norm.bias.detach() if norm.bias is not None else None
    for lin in linears:
        shift = lin.weight @ beta if beta is not None else torch.zeros(lin.out_features)
        lin.weight.mul_(gamma)
        if lin.bias is None:
            lin.bias = nn.Parameter(shift.clone())
        else:
            lin.bias.add_(shift)
    norm.weight, norm.bias = None, None


def _foldable(norm: nn.Module) -> bool:
    return isinstance(norm, MPCNorm) and norm.weight is not None and not norm.channels_first


@torch.no_grad()
def fold_norm_affine(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("fold_norm_affine")
    if not ctx.policy.fold_affine:
        return result
    for node in gm.graph.nodes:
        norm = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not _foldable(norm):
            continue
        linears = [_consumer_linear(gm, u) for u in node.users]
        if linears and all(lin is not None for lin in linears):
            _fold(norm, linears)
            result.record(node.target, f"into {', '.join(str(u.target) for u in node.users)}")
    for container, norm_name, linear_name in INTERNAL:
        for path, m in modules_of(gm, container):
            if _foldable(getattr(m, norm_name)):
                _fold(getattr(m, norm_name), [getattr(m, linear_name)])
                result.record(f"{path}.{norm_name}", f"into {path}.{linear_name}")
    return result
