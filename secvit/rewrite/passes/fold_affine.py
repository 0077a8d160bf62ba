"""Pass: fold a norm's per-channel affine into the Linear layers that read it (exact).

A ``norm.batch`` norm's affine is its inference-time one (running statistics folded in),
so it leaves the secure graph entirely.

After Li et al., RepQ-ViT (ICCV 2023): y = (x_hat * g + b) W^T + c = x_hat (W diag g)^T
+ (W b + c). The norm keeps only its normalisation, and the secure graph loses one
elementwise product by a secret per norm. Applies when every user of the norm's output
is a Linear or an :class:`MPCAttention` (folded into its ``qkv``), and inside modules
whose norm feeds one Linear by construction (:data:`INTERNAL`: TinyViT's attention
``pre_norm`` and ``NormMlp``, which live in blocks traced per shape).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.fx as fx
import torch.nn as nn
from timm.models.tiny_vit import NormMlp

from ...mpc_modules import MPCAttention, MPCNorm
from ..graph import modules_of
from .base import PassContext, PassResult

__all__ = ["INTERNAL", "fold_batch_statistics", "fold_norm_affine", "has_batch_statistics"]

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
    affine = norm.inference_affine()
    gamma, beta = affine.get("weight"), affine.get("bias")
    for lin in linears:
        shift = lin.weight @ beta if beta is not None else torch.zeros(lin.out_features)
        if gamma is not None:
            lin.weight.mul_(gamma)
        if lin.bias is None:
            lin.bias = nn.Parameter(shift.clone())
        else:
            lin.bias.add_(shift)
    norm.drop_affine()


def _affine_only(norm: MPCNorm) -> bool:
    return norm.running_mean is None


def _with_statistics(norm: MPCNorm) -> bool:
    return norm.running_mean is not None


def _fold_norms(gm: fx.GraphModule, result: PassResult, which: Callable[[MPCNorm], bool]) -> PassResult:
    def foldable(norm: nn.Module) -> bool:
        return (isinstance(norm, MPCNorm) and which(norm) and bool(norm.inference_affine())
                and not norm.channels_first)

    for node in gm.graph.nodes:
        norm = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not foldable(norm):
            continue
        linears = [_consumer_linear(gm, u) for u in node.users]
        if linears and all(lin is not None for lin in linears):
            _fold(norm, linears)
            result.record(node.target, f"into {', '.join(str(u.target) for u in node.users)}")
    for container, norm_name, linear_name in INTERNAL:
        for path, m in modules_of(gm, container):
            if foldable(getattr(m, norm_name)):
                _fold(getattr(m, norm_name), [getattr(m, linear_name)])
                result.record(f"{path}.{norm_name}", f"into {path}.{linear_name}")
    return result


@torch.no_grad()
def fold_norm_affine(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    """The policy's ``fold_affine``: fold the learned affine of norms without statistics
    (a BatchNorm's statistics change while it trains: :func:`fold_batch_statistics`)."""
    result = PassResult("fold_norm_affine")
    return _fold_norms(gm, result, _affine_only) if ctx.policy.fold_affine else result


def has_batch_statistics(model: nn.Module) -> bool:
    """Whether ``model`` holds a ``norm.batch`` norm with its running statistics."""
    return any(isinstance(m, MPCNorm) and _with_statistics(m) for m in model.modules())


@torch.no_grad()
def fold_batch_statistics(gm: fx.GraphModule) -> PassResult:
    """Fold every ``norm.batch`` norm's inference affine (statistics, gamma, beta) into the
    Linear layers that read it, in place: the trained model as the secure plan runs it."""
    return _fold_norms(gm, PassResult("fold_batch_statistics"), _with_statistics)
