"""Which K/V head each query head reads in grouped-query attention, by mode (after Khan et
al., "Beyond Uniform Query Distribution: Key-Driven Grouped Query Attention", 2024).

- ``mean``: H / G consecutive query heads per K/V head (Ainslie et al.'s GQA conversion).
- ``kdgqa``: every forward pass allocates the query heads to the G groups in proportion to
  the norms of the groups' keys (``allocate``) - data-dependent, so refused under MPC.
- ``dgqa``: the same allocation from an exponential moving average of those norms over
  training, re-allocated every ``interval`` training steps and fixed at the end; under MPC
  it is a public index like ``mean``'s.
- ``pgqa``: ``mean``'s static groups; during training a Gaussian perturbation of standard
  deviation ``sigma`` is subtracted from the attention maps (none at inference).
"""

from __future__ import annotations

import torch

__all__ = ["GQA_MODES", "QueryGrouping", "allocate", "consecutive"]

GQA_MODES = ("mean", "kdgqa", "dgqa", "pgqa")


def consecutive(heads: int, groups: int) -> list[int]:
    """The group of each query head when each group serves ``heads / groups`` consecutive heads."""
    return [h * groups // heads for h in range(heads)]


def allocate(norms: torch.Tensor, heads: int) -> list[int]:
    """Query heads allocated to groups in proportion to ``norms`` (G,), at least one per
    group, by largest remainder (ties to the lower group), consecutive in head order.

    Example: norms (3, 1) and 4 heads give quotas (3, 1): heads 0-2 to group 0, head 3 to 1.
    """
    groups = len(norms)
    quota = (norms.double().clamp_min(0) / norms.double().clamp_min(0).sum().clamp_min(1e-30)) * heads
    counts = quota.floor().long().clamp_min(1)
    while int(counts.sum()) != heads:
        if int(counts.sum()) > heads:  # take from the group furthest above its quota that has more than one
            excess = torch.where(counts > 1, counts - quota, torch.full_like(quota, -torch.inf))
            counts[int(excess.argmax())] -= 1
        else:  # give to the group furthest below its quota
            counts[int((quota - counts).argmax())] += 1
    return [g for g in range(groups) for _ in range(int(counts[g]))]


def _group_norms(k: torch.Tensor) -> torch.Tensor:
    """The Frobenius norm of each K/V group's keys, over batch, tokens and channels: (G,)."""
    return k.detach().float().pow(2).sum((0, 2, 3)).sqrt()


class QueryGrouping:
    """The query-to-group index of one attention layer and, by mode, how it moves.

    Args:
        mode: One of :data:`GQA_MODES`.
        heads, groups: Query heads and K/V groups of the layer.
        assignment: A fixed group per query head (a trained ``dgqa`` layer); default
            consecutive.
        momentum: ``dgqa``: weight of the running norms at each training step.
        interval: ``dgqa``: training steps between re-allocations.
        sigma: ``pgqa``: standard deviation of the training perturbation.
    """

    def __init__(self, mode: str, heads: int, groups: int, assignment: list[int] | None = None,
                 momentum: float = 0.99, interval: int = 50, sigma: float = 0.01):
        if mode not in GQA_MODES:
            raise ValueError(f"unknown GQA mode {mode!r}; known: {', '.join(GQA_MODES)}")
        self.mode, self.heads, self.groups = mode, heads, groups
        self.assignment = list(assignment) if assignment is not None else consecutive(heads, groups)
        if len(self.assignment) != heads or sorted(set(self.assignment)) != list(range(groups)):
            raise ValueError(f"assignment {self.assignment}: expected {heads} heads over all {groups} groups")
        self.momentum, self.interval, self.sigma = momentum, interval, sigma
        self.running_norms: torch.Tensor | None = None
        self.steps = 0

    @property
    def data_dependent(self) -> bool:
        """Whether the index depends on the input (``kdgqa``): it would leak under MPC."""
        return self.mode == "kdgqa"

    def index(self, k, training: bool) -> torch.Tensor:
        """The K/V group of each query head for keys ``k`` (batch, G, tokens, d)."""
        if self.mode == "kdgqa":
            return torch.tensor(allocate(_group_norms(k), self.heads))
        if self.mode == "dgqa" and training:
            norms = _group_norms(k)
            self.running_norms = norms if self.running_norms is None else (
                self.momentum * self.running_norms + (1 - self.momentum) * norms)
            self.steps += 1
            if self.steps % self.interval == 0:
                self.assignment = allocate(self.running_norms, self.heads)
        return torch.tensor(self.assignment)

    def perturb(self, attn: torch.Tensor, training: bool) -> torch.Tensor:
        """``pgqa`` in training: the attention maps less Gaussian noise; otherwise unchanged."""
        if self.mode == "pgqa" and training:
            return attn - self.sigma * torch.randn_like(attn)
        return attn

    def record(self) -> dict:
        """What a checkpoint keeps to rebuild the layer (the trained assignment)."""
        return {"mode": self.mode, "assignment": self.assignment}
