"""Pass: softmax over the last dimension (``torch.softmax``, ``F.softmax``, the method, or an
``nn.Softmax`` module) -> :class:`MPCSoftmax` with the policy's attention protocol, and
``F.gelu`` -> :class:`MPCActivation` with its activation protocol.

Softmax and GELU run under MPC only as MPC modules; the attention and activation passes
replace them where they are modules, this pass where a model calls them as functions.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ...mpc_modules import MPCActivation, MPCSoftmax
from ..graph import modules_of, set_submodule
from .base import PassContext, PassResult

__all__ = ["replace_calls"]


def _is_softmax_call(node: fx.Node) -> bool:
    """A softmax call over the last dimension (dim=-1), with no dtype cast."""
    if not ((node.op == "call_function" and node.target in (torch.softmax, F.softmax))
            or (node.op == "call_method" and node.target == "softmax")):
        return False
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    return dim == -1 and node.kwargs.get("dtype") is None


def _module_path(node: fx.Node) -> str:
    """The innermost module the call runs in ("" at the top)."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    return stack[-1][0] if stack else ""


def _to_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module) -> str:
    """Replace the call ``node`` by ``module``, registered inside the module that made the
    call (so that the profiler charges it there); returns its path."""
    owner = _module_path(node)
    name = f"{owner}.{node.name}_mpc" if owner else f"{node.name}_mpc"
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return name


def replace_calls(gm: fx.GraphModule, ctx: PassContext) -> PassResult:
    result = PassResult("replace_calls")
    for path, softmax in modules_of(gm, nn.Softmax):
        if softmax.dim == -1:
            protocol = ctx.policy.attention.choose(path, ctx.layer(path))[0]
            set_submodule(gm, path, MPCSoftmax(protocol))
            result.record(path, protocol)
    for node in list(gm.graph.nodes):
        path = _module_path(node)
        if _is_softmax_call(node):
            protocol = ctx.policy.attention.choose(path, ctx.layer(path))[0]
            result.record(_to_module(gm, node, MPCSoftmax(protocol)), protocol)
        elif node.op == "call_function" and node.target is F.gelu:
            protocol = ctx.policy.activation.choose(path, ctx.layer(path))[0]
            result.record(_to_module(gm, node, MPCActivation(protocol)), protocol)
    return result
