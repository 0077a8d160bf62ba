"""Graph rewriter: substitute MPC-friendly protocols by policy (torch.fx passes).

    gm, report = rewrite(model, load_policy("mpcformer"))

The result is the plaintext reference of the secure model: the same graph and protocol
choices, running the protocols' reference kernels (trainable).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
import torch.nn as nn

from ..mpc_modules import MPC_MODULES
from ..tracing import trace
from .graph import attention_heads, block_layers, op_counts, to_networkx
from .passes import PASSES
from .passes.base import PassContext, PassResult
from .policy import Policy, PolicyError, load_policy

__all__ = ["Policy", "PolicyError", "RewriteReport", "load_policy", "rewrite", "rewrite_remaining", "to_networkx"]


@dataclass
class RewriteReport:
    """What the passes changed, and op counts by kind before and after."""

    policy: str
    passes: list[PassResult] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "before": self.before, "after": self.after,
                "passes": [{"name": p.name, "changed": p.changed,
                            "changes": [{"module": m, "now": w} for m, w in p.changes]} for p in self.passes]}


def rewrite(model: nn.Module, policy: Policy) -> tuple[fx.GraphModule, RewriteReport]:
    """Rewrite a copy of ``model`` by ``policy``; the original is left untouched.

    Raises:
        PolicyError: the policy names layers or heads the model does not have, or the
            model is already rewritten (a policy applies to a plain model).
    """
    if any(isinstance(m, MPC_MODULES) for m in model.modules()):
        raise PolicyError(f"the model is already rewritten (it holds MPC modules); apply policy {policy.name!r} to "
                          "the plain checkpoint it came from, or leave the policy out")
    return _rewritten(model, policy)


def rewrite_remaining(model: nn.Module) -> fx.GraphModule:
    """A copy of ``model`` whose plain ops that run under MPC only as MPC modules (GELU,
    LayerNorm, softmax, timm's attentions) are rewritten by the ``exact`` policy; the MPC
    modules it already holds keep their protocols. The secure plan's one route."""
    return _rewritten(model, load_policy("exact"))[0]


def _rewritten(model: nn.Module, policy: Policy) -> tuple[fx.GraphModule, RewriteReport]:
    model.train(model.training)  # same mode; drops timm's cached attention biases, which deepcopy refuses
    gm = trace(copy.deepcopy(model).eval())
    blocks = block_layers(gm)
    policy.check(heads=[attention_heads(gm.get_submodule(b)) for b in blocks])
    report = RewriteReport(policy.name, before=op_counts(gm))
    ctx = PassContext(policy, blocks)
    for run in PASSES:
        report.passes.append(run(gm, ctx))
        gm.graph.lint()
        gm.recompile()
    report.after = op_counts(gm)
    gm.train(model.training)  # the new modules too (a BatchNorm's forward depends on it)
    return gm, report
