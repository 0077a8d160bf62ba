"""ElasticViT's two sampling rules, with secure cost as the complexity.

**Complexity-aware.** A pool of candidate subnets is sorted by complexity
(:mod:`.cost`) and cut into ``bins`` of equal counts. The bin of step s walks back and forth
across them, ``0, 1, …, K−1, K−2, …, 1, 0, 1, …``, so two consecutive steps train subnets of
neighbouring bins (their complexity differs by at most two bins' span) while every cycle
covers the whole range; within the bin the subnet is drawn at random.

**Performance-aware.** Each bin keeps a memory bank of its ``bank_size`` best subnets,
ranked by the loss on a fixed calibration batch of held-out training images; at a bin's
first step and every ``refresh`` of its steps after, its bank and ``candidates`` fresh
draws from it are scored again with the current weights, and the best kept. A step takes a subnet of the bank with
probability ``1 − explore`` (the ones predicted accurate), a random one of the bin
otherwise.

Every draw comes from a generator seeded with ``seed`` and the step, so a run is
reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .space import Subnet
from .supervit import subnet_forward

if TYPE_CHECKING:
    from .supervit import SuperViT

__all__ = ["ComplexityAwareSampler", "walk"]


def walk(step: int, bins: int) -> int:
    """The bin of ``step``: a triangle wave over ``0..bins-1`` (period ``2 (bins - 1)``)."""
    if bins == 1:
        return 0
    phase = step % (2 * (bins - 1))
    return phase if phase < bins else 2 * (bins - 1) - phase


class ComplexityAwareSampler:
    """Draws each training step's subnet (see the module docstring)."""

    def __init__(self, pool: list[Subnet], complexity: list[float], calibration: tuple[torch.Tensor, torch.Tensor],
                 bins: int = 6, bank_size: int = 3, candidates: int = 4, refresh: int = 20, explore: float = 0.5,
                 seed: int = 0):
        if len(pool) != len(complexity) or len(pool) < bins:
            raise ValueError(f"a pool of {len(pool)} subnets ({len(complexity)} complexities) for {bins} bins")
        order = sorted(range(len(pool)), key=lambda i: complexity[i])
        self.bins = [[pool[i] for i in part] for part in torch.tensor(order).tensor_split(bins)]
        self.calibration = calibration
        self.bank_size, self.candidates, self.refresh, self.explore, self.seed = (bank_size, candidates, refresh,
                                                                                  explore, seed)
        self.banks: list[list[Subnet]] = [[] for _ in self.bins]
        self.step = 0
        self.visits = [0] * bins
        self.from_bank = 0

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)

    @torch.no_grad()
    def _loss(self, model: "SuperViT", subnet: Subnet) -> float:
        x, y = self.calibration
        was_training = model.training
        model.eval()
        loss = float(F.cross_entropy(subnet_forward(model.base, subnet, x), y))
        model.train(was_training)
        return loss

    def _refresh(self, model: "SuperViT", b: int, generator: torch.Generator) -> None:
        """Score the bank and fresh draws of bin ``b``; keep the best ``bank_size``."""
        members = self.bins[b]
        fresh = [members[int(i)] for i in torch.randint(len(members), (self.candidates,), generator=generator)]
        scored = {s: self._loss(model, s) for s in dict.fromkeys(self.banks[b] + fresh)}
        self.banks[b] = sorted(scored, key=scored.get)[: self.bank_size]

    def next(self, model: "SuperViT") -> Subnet:
        """The subnet of the next training step."""
        generator = self._generator()
        b = walk(self.step, len(self.bins))
        if self.visits[b] % self.refresh == 0:
            self._refresh(model, b, generator)
        self.step += 1
        self.visits[b] += 1
        if float(torch.rand((), generator=generator)) >= self.explore:
            self.from_bank += 1
            bank = self.banks[b]
            return bank[int(torch.randint(len(bank), (), generator=generator))]
        members = self.bins[b]
        return members[int(torch.randint(len(members), (), generator=generator))]

    def state_dict(self) -> dict:
        """Where the walk stands (step, visits, bank draws) and the banks: what a resumed
        run needs to draw the uninterrupted run's subnets."""
        return {"step": self.step, "visits": list(self.visits), "from_bank": self.from_bank,
                "banks": [[s.to_dict() for s in bank] for bank in self.banks]}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s record."""
        self.step, self.visits, self.from_bank = int(state["step"]), list(state["visits"]), int(state["from_bank"])
        self.banks = [[Subnet.from_dict(s) for s in bank] for bank in state["banks"]]

    def summary(self) -> dict:
        """Steps per bin, the share drawn from the banks, and each bin's complexity span."""
        return {"steps": self.step, "visits_per_bin": self.visits,
                "from_bank": round(self.from_bank / max(1, self.step), 4)}
