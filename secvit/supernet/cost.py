"""The secure cost of a subnet, the supernet's complexity measure: rounds and bytes per party
of one image's forward pass, counted by the fixed-point emulation of its secure plan (the
registry's declared costs, which the registry tests prove equal to the measured ones) plus
the opening of the logits to the client, as a secure session measures them, and
one scalar for sampling, the communication time those would take on a network profile
(``wan`` by default: 80 ms RTT), with no FLOPs involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from timm.models.vision_transformer import VisionTransformer

from protocols import costs
from protocols.fixed_point import FixedPoint

from ..network import NetworkProfile, load_network
from ..secure.emulation import emulate
from .space import Subnet
from .supervit import extract

__all__ = ["SubnetCost", "subnet_cost"]


@dataclass(frozen=True)
class SubnetCost:
    """Per party, per image."""

    rounds: int
    bytes: int

    def complexity(self, network: NetworkProfile | None = None) -> float:
        """Seconds of communication on ``network`` (``wan`` when None)."""
        return (network or load_network("wan")).estimate(0.0, self.bytes, self.rounds)


def subnet_cost(base: VisionTransformer, subnet: Subnet, build: Callable[..., VisionTransformer],
                image: torch.Tensor) -> SubnetCost:
    """Rounds and bytes of ``subnet``'s secure forward on one normalised ``image`` (1, C, H, W),
    the logits' opening included."""
    fp = FixedPoint()
    logits = emulate(extract(base, subnet, build), image[:1], fp=fp)
    cost = fp.total_cost() + costs.reveal(logits.numel())
    return SubnetCost(int(cost.rounds), int(cost.bytes))
