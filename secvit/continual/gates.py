"""Gated class-attention: per-task gates on the units of the last block (exemplar-free
continual learning of ViTs: Cotogni et al., "Gated Class-Attention with Cascaded Feature
Drift Compensation for Exemplar-free Continual Learning of Vision Transformers", 2022; the
gates are HAT's: Serra et al., "Overcoming Catastrophic Forgetting with Hard Attention to
the Task", ICML 2018).

Every Linear layer of the class-attention block (q, k, v, proj, fc1, fc2) gates its output
units: in task t, unit i's output is multiplied by ``g_t,i = σ(s · e_t,i)`` (a learned
embedding ``e_t``; ``s`` anneals from ``1/S_MAX`` to ``S_MAX`` over the task, so the gate
ends near-binary). A unit's weights (its row and bias) change in task t in proportion to
``1 − a_<t,i``, where ``a_<t = max_k<t σ(S_MAX · e_k)`` is the accumulated gate of the
earlier tasks: the update is written ``W = W_base + (1 − a_<t) ⊙ ΔW`` with ``ΔW`` the
trained parameter, so the proportion holds for any optimiser (Adam rescales gradients,
which HAT's gradient masking under SGD does not survive) and weight decay included. HAT's
sparsity loss, ``SPARSITY · Σ g_t (1 − a_<t) / Σ (1 − a_<t)`` over all gated units, keeps
capacity free for later tasks. The block's norms and layer scales train in the first task
only.

Inference uses the accumulated gates ``a_≤T`` of every task, no task ID: fixed, public
per-unit scales, folded into the rows of the weights (:meth:`TaskGating.fold`), so the
secure engine runs a plain class-attention block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GATED_LAYERS", "S_MAX", "SPARSITY", "GatedLinear", "TaskGating"]

GATED_LAYERS = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")
S_MAX = 400.0
SPARSITY = 0.75


class GatedLinear(nn.Module):
    """A Linear layer whose output units are gated per task and whose rows update in
    proportion to ``keep = 1 − a_<t`` (``weight`` / ``bias``: the update ``ΔW`` of the task)."""

    def __init__(self, linear: nn.Linear, tasks: int):
        super().__init__()
        out = linear.out_features
        self.has_bias = linear.bias is not None
        self.register_buffer("base_weight", linear.weight.detach().clone())
        self.register_buffer("base_bias", linear.bias.detach().clone() if linear.bias is not None
                             else torch.zeros(out))
        self.weight = nn.Parameter(torch.zeros_like(linear.weight))
        self.bias = nn.Parameter(torch.zeros(out))
        self.embeddings = nn.ParameterList(nn.Parameter(torch.randn(out)) for _ in range(tasks))  # 1-D: no decay
        self.register_buffer("keep", torch.ones(out))
        self.register_buffer("accumulated", torch.zeros(out))  # a_<t, then a_≤T
        self.task: int | None = None
        self.scale = S_MAX

    def effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_base + keep ⊙ ΔW, b_base + keep ⊙ Δb)``."""
        return self.base_weight + self.keep[:, None] * self.weight, self.base_bias + self.keep * self.bias

    def gate(self) -> torch.Tensor:
        """``σ(s · e_t)`` while task t trains (``s = S_MAX`` in evaluation); the accumulated
        gates otherwise."""
        if self.task is None:
            return self.accumulated
        return torch.sigmoid((self.scale if self.training else S_MAX) * self.embeddings[self.task])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.effective()
        return F.linear(x, weight, bias) * self.gate()


class TaskGating(nn.Module):
    """The gates of one class-attention block: installs :class:`GatedLinear` in place of its
    Linear layers, and steps them through the tasks (``begin`` / ``end``). Attached to the
    model under training, it is found by :func:`secvit.train.fit` as a module with a
    ``schedule`` (the annealing of ``s``) and a ``regularization`` (the sparsity loss)."""

    def __init__(self, block: nn.Module, tasks: int):
        super().__init__()
        self.tasks = tasks
        self.frozen_after_first = [*block.norm1.parameters(), *block.norm2.parameters(), block.gamma_1, block.gamma_2]
        layers = []
        for path in GATED_LAYERS:
            owner_path, name = path.rsplit(".", 1)
            owner = block.get_submodule(owner_path)
            layer = GatedLinear(getattr(owner, name), tasks)
            setattr(owner, name, layer)
            layers.append(layer)
        self.__dict__["layers"] = layers  # not submodules: the block owns them

    def begin(self, task: int) -> None:
        """Start training ``task``: its gates on, the earlier tasks' units kept."""
        if not 0 <= task < self.tasks:
            raise ValueError(f"task {task} out of range 0..{self.tasks - 1}")
        for layer in self.layers:
            layer.task = task
            layer.keep.copy_(1 - layer.accumulated)
        if task > 0:
            for p in self.frozen_after_first:
                p.requires_grad_(False)

    def schedule(self, progress: float) -> None:
        """Anneal ``s`` linearly from ``1/S_MAX`` to ``S_MAX`` over the task."""
        for layer in self.layers:
            layer.scale = 1 / S_MAX + (S_MAX - 1 / S_MAX) * progress

    def regularization(self) -> torch.Tensor:
        """HAT's sparsity loss on the current task's gates."""
        used = sum((layer.gate() * layer.keep).sum() for layer in self.layers)
        return SPARSITY * used / sum(layer.keep.sum() for layer in self.layers).clamp_min(1.0)

    @torch.no_grad()
    def end(self) -> None:
        """Close the current task: its updates join the base weights and its gates the
        accumulated ones (``a ← max(a, σ(S_MAX · e_t))``)."""
        for layer in self.layers:
            weight, bias = layer.effective()
            layer.base_weight.copy_(weight)
            layer.base_bias.copy_(bias)
            layer.weight.zero_()
            layer.bias.zero_()
            closing = torch.sigmoid(S_MAX * layer.embeddings[layer.task])
            layer.accumulated.copy_(torch.maximum(layer.accumulated, closing))
            layer.task = None

    def units_used(self) -> float:
        """The share of the gated units the accumulated gates keep open (≥ 0.5)."""
        return float(sum((layer.accumulated >= 0.5).sum() for layer in self.layers)
                     / sum(layer.accumulated.numel() for layer in self.layers))

    @torch.no_grad()
    def fold(self, block: nn.Module) -> None:
        """Replace the gated layers of ``block`` by plain Linear layers computing the same
        with the accumulated gates: ``diag(a) W``, ``a ⊙ b``."""
        for path, layer in zip(GATED_LAYERS, self.layers, strict=True):
            owner_path, name = path.rsplit(".", 1)
            weight, bias = layer.effective()
            plain = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.has_bias)
            plain.weight.copy_(layer.accumulated[:, None] * weight)
            if layer.has_bias:
                plain.bias.copy_(layer.accumulated * bias)
            setattr(block.get_submodule(owner_path), name, plain)
