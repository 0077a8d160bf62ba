"""Secure plan: the traced model run node by node on CrypTensors.

Every party builds the same plan from the same (public) architecture. The model owner's
plaintext weights enter once, at :meth:`SecurePlan.encrypt_weights`; the client builds
its plan from a ``meta``-device skeleton and never holds them. Inputs are encrypted by
the client (:meth:`SecurePlan.encrypt_input`); logits are revealed to the client only.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator

import torch
import torch.fx as fx
import torch.nn as nn

from protocols.backend import crypten
from protocols.fixed_point import FixedPoint
from protocols.stationary import fix_masks

from ..ops import UnsupportedOpError, function_op, method_op, module_op
from ..rewrite import rewrite_remaining
from ..rewrite.passes.fold_affine import fold_batch_statistics, has_batch_statistics
from ..runtime.roles import CLIENT, OWNER
from ..tracing import leaf_modules, trace, trace_at, traced_per_shape

__all__ = ["NodeHook", "SecurePlan", "getattr_path"]

NodeHook = Callable[[str, fx.Node, Callable[[], Any]], Any]


class _Interpreter(fx.Interpreter):
    """Runs one graph of the plan: the model's, or (``prefix`` = its path + ".") that of
    a block traced at the shape it is called with."""

    def __init__(self, plan: "SecurePlan", gm: fx.GraphModule, hook: NodeHook | None, prefix: str = ""):
        super().__init__(gm, garbage_collect_values=True)
        self.plan, self.hook, self.prefix = plan, hook, prefix

    def run_node(self, n: fx.Node) -> Any:
        if self.hook is None:
            return super().run_node(n)
        return self.hook(self.prefix, n, lambda: super(_Interpreter, self).run_node(n))

    def get_attr(self, target: str, args: tuple, kwargs: dict) -> Any:
        secret = self.plan.module_secrets("").get(self.prefix + target)
        return secret if secret is not None else super().get_attr(target, args, kwargs)

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        module, path = self.fetch_attr(target), self.prefix + target
        op = module_op(module)
        if op.per_shape:
            graph = self.plan.specialised(path, module, tuple(args[0].size()))
            return _Interpreter(self.plan, graph, self.hook, path + ".").run(*args, **kwargs)
        return op.secure(module, self.plan.module_secrets(path), *args, **kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        op = function_op(target)
        return (op.secure if op and op.secure else target)(*args, **kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        op = method_op(target)
        if op and op.secure:
            return op.secure(*args, **kwargs)
        self_obj, *rest = args
        if not hasattr(self_obj, target):
            raise UnsupportedOpError(f"CrypTensors have no method {target!r}")
        return getattr(self_obj, target)(*rest, **kwargs)


MASK_FLOOR = -30.0
"""Where the owner clamps additive attention masks (Swin's shifted-window ``attn_mask``,
-100 between tokens of different windows): e^-30 is below 2^-43, zero after a softmax at
16 fractional bits as e^-100 is, and the rows stay inside ``softmax.exact``'s spread
(96) when their scores spread up to 66."""


def _deep_masks(model: nn.Module) -> list[torch.Tensor]:
    """The model's additive attention masks beyond :data:`MASK_FLOOR`: floating-point
    buffers of two values, 0 and one below the floor (tracing renames buffers, so they are
    recognised by value; none on a ``meta`` skeleton: the values are the owner's)."""
    return [b for b in model.buffers() if b.is_floating_point() and b.device.type != "meta" and b.numel()
            and len(values := b.unique()) == 2 and float(values[1]) == 0.0 and float(values[0]) < MASK_FLOOR]


class SecurePlan:
    """A traced model whose secret tensors are CrypTensors shared by the model owner.

    One route: plain ops that run under MPC only as MPC modules (GELU, LayerNorm,
    softmax, timm's attentions) are first rewritten by the ``exact`` policy
    (:func:`~secvit.rewrite.rewrite_remaining`); then every node must be an op the table
    (:mod:`secvit.ops`) says how to run. Trained ``norm.batch`` norms are folded, on a
    copy, into the Linear layers that read them (inference statistics are fixed). A
    LayerNorm's gamma and beta are not (the policy's ``fold_affine`` can): folded into the
    next weights, they would multiply the normalised values' rounding by gamma (the
    MPCFormer checkpoint's logits moved 5x more).

    Args:
        model: The plaintext model (owner) or a ``meta``-device skeleton of the same
            architecture (client).

    Raises:
        UnsupportedOpError: an op the secure engine cannot run, named with its reason.
    """

    def __init__(self, model: nn.Module):
        self.model = model.eval()
        self.graph_module = trace(self.model)
        self._by_module: dict[str, dict[str, Any]] | None = None  # set by encrypt/emulate_weights
        self._specialised: dict[tuple[str, tuple[int, ...]], fx.GraphModule] = {}
        if self._refusals():
            self.model = rewrite_remaining(self.model)
            self.graph_module = trace(self.model)
        if has_batch_statistics(self.model):  # the owner folds them into the next Linear layers
            self.model = copy.deepcopy(self.model)
            fold_batch_statistics(trace(self.model))
            self.graph_module = trace(self.model)
        if _deep_masks(self.model):
            self.model = copy.deepcopy(self.model)
            for mask in _deep_masks(self.model):
                mask.clamp_(min=MASK_FLOOR)
            self.graph_module = trace(self.model)
        refusals = self._refusals()
        if refusals:
            raise UnsupportedOpError(refusals[0])

    def _node_leaves(self, node: fx.Node) -> list[tuple[str, nn.Module]]:
        """``(path, module)`` of the leaf modules a ``call_module`` node runs: itself, or
        those inside a block traced per shape."""
        module = self.graph_module.get_submodule(node.target)
        if traced_per_shape(module):
            return list(leaf_modules(module, prefix=node.target + "."))
        return [(node.target, module)]

    def _refusals(self) -> list[str]:
        """Why each node the secure engine cannot run is refused, in graph order."""
        found = []
        for node in self.graph_module.graph.nodes:
            if node.op == "call_module":
                for path, module in self._node_leaves(node):
                    op = module_op(module)
                    if op is None:
                        found.append(f"{path}: no secure lowering for module type {type(module).__name__}")
                    elif op.refused or op.refuses(module):
                        found.append(f"{path}: {op.name} {op.refused or op.refuses(module)}")
            elif node.op in ("call_function", "call_method"):
                op = function_op(node.target) if node.op == "call_function" else method_op(node.target)
                if op is not None and op.refused:
                    found.append(f"{node.name}: {op.name} {op.refused}")
        return found

    def specialised(self, path: str, module: nn.Module, shape: tuple[int, ...]) -> fx.GraphModule:
        """The graph of the block at ``path`` for inputs of ``shape`` (traced once per shape)."""
        key = (path, shape)
        if key not in self._specialised:
            self._specialised[key] = trace_at(module, shape)
        return self._specialised[key]

    def plaintext_secrets(self) -> Iterator[tuple[str, str, torch.Tensor]]:
        """The owner's secret tensors in graph order, as (owner, name, tensor): a leaf
        module's derived tensors (owner = its path) and float attributes (owner = "")."""
        seen: set[tuple[str, str]] = set()
        for node in self.graph_module.graph.nodes:
            if node.op == "call_module":
                items = [(path, k, v) for path, m in self._node_leaves(node) for k, v in module_op(m).prepare(m).items()]
            elif node.op == "get_attr":
                value = getattr_path(self.graph_module, node.target)
                items = [("", node.target, value.detach())] if torch.is_floating_point(value) else []
            else:
                continue
            for owner, name, value in items:
                if (owner, name) not in seen:
                    seen.add((owner, name))
                    yield owner, name, value

    def encrypt_weights(self, rank: int, owner: int = OWNER,
                        run: Callable[[Callable[[], None]], None] = lambda step: step()) -> None:
        """Secret-share the owner's tensors (pseudo-random zero shares, no round) and fix
        their masks (:meth:`fix_weight_masks`, one round).

        Every party calls this; on parties other than ``owner`` only the shapes are used.
        ``run`` runs the mask step: directly (TFP), or with its correlated values prepared
        by the dealer first (:meth:`~secvit.runtime.dealer.OfflinePhase.run`).
        """
        plaintext: dict[int, torch.Tensor] = {}  # on the owner: each secret's value, by the secret's id

        def share(value: torch.Tensor) -> Any:
            secret = crypten.cryptensor(value.float() if rank == owner else torch.zeros(value.shape), src=owner)
            if rank == owner:
                plaintext[id(secret)] = value.float()
            return secret

        self._load(share)
        run(lambda: self.fix_weight_masks(owner, plaintext))

    def emulate_weights(self, fp: FixedPoint) -> None:
        """Hold the owner's tensors as fixed-point secrets of ``fp``, their masks fixed
        (:meth:`fix_weight_masks`, not counted in ``fp``'s cost: a forward pass's is): the
        plan then runs in plaintext on :class:`~protocols.fixed_point.FixedPointTensor`
        inputs and computes what MPC computes (:func:`~secvit.secure.emulation.emulate`)."""
        self._load(lambda value: fp.tensor(value.float()))
        cost = fp.cost
        self.fix_weight_masks()
        fp.cost = cost

    def _load(self, secret: Callable[[torch.Tensor], Any]) -> None:
        self._by_module = {}
        for module, name, value in self.plaintext_secrets():
            self._by_module.setdefault(module, {})[name] = secret(value)

    def fix_weight_masks(self, owner: int = OWNER, plaintext: dict[int, torch.Tensor] | None = None) -> None:
        """Mask the weights once (:mod:`protocols.stationary`, one round): every product by
        a weight then reveals only the activation, to the ``owner``, who passes the secrets'
        ``plaintext`` values by the secrets' ids (emulation passes nothing)."""
        weights, seen = [], set()
        for node in self.graph_module.graph.nodes:
            for path, module in self._node_leaves(node) if node.op == "call_module" else ():
                for name in module_op(module).stationary:
                    secret = self._by_module.get(path, {}).get(name)
                    if secret is not None and id(secret) not in seen:
                        seen.add(id(secret))
                        weights.append(secret)
        fix_masks(weights, owner, [plaintext[id(w)] for w in weights] if plaintext else None)

    def module_secrets(self, path: str) -> dict[str, Any]:
        """The encrypted tensors of the leaf module at ``path`` by name ("" holds the
        float attributes read by ``get_attr`` nodes, by their full target)."""
        return self._by_module.get(path, {})

    @staticmethod
    def encrypt_input(images: torch.Tensor | None, rank: int, shape: tuple[int, ...], client: int = CLIENT):
        """Secret-share the client's normalised images of the public ``shape``; other
        parties pass None (no shape crosses the network: both sides know it)."""
        if rank == client and tuple(images.shape) != tuple(shape):
            raise ValueError(f"images of shape {tuple(images.shape)}; the session expects {tuple(shape)}")
        plain = images if rank == client else torch.empty(shape)
        return crypten.cryptensor(plain, src=client)

    def forward(self, x, hook: NodeHook | None = None):
        """Run the plan on an encrypted batch; ``hook(prefix, node, run)`` may wrap each
        node (``prefix``: "" or the path + "." of the per-shape block it belongs to)."""
        if self._by_module is None:
            raise RuntimeError("encrypt_weights() or emulate_weights() must run before forward()")
        return _Interpreter(self, self.graph_module, hook).run(x)

    __call__ = forward


def getattr_path(root: nn.Module, target: str) -> Any:
    """``root.a.b.c`` for ``target = "a.b.c"``."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
