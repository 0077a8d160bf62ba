"""The supernet's search space and its subnets.

A subnet of a ViT-Lite supernet takes its first ``depth`` blocks, the first ``embed_dim``
channels of every token, the first ``num_heads`` heads of every attention (each head as wide
as the supernet's) and the first ``mlp_ratio · embed_dim`` hidden units of every MLP
(ElasticViT's weight sharing), with one attention protocol per layer from the registry. A
subnet is uniform across layers in width, heads and MLP ratio, so that it is an ordinary
ViT-Lite (``model_args``); its attentions differ by layer through a policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer

from ..errors import UsageError

__all__ = ["ATTENTIONS", "SearchSpace", "Subnet"]

ATTENTIONS = ("softmax.exact", "softmax.relu", "softmax.scaling")


@dataclass(frozen=True)
class Subnet:
    """One architecture of the space."""

    depth: int
    embed_dim: int
    num_heads: int
    mlp_ratio: float
    attention: tuple[str, ...]  # one protocol per layer

    def __post_init__(self) -> None:
        if len(self.attention) != self.depth:
            raise ValueError(f"a subnet of depth {self.depth} needs {self.depth} attention protocols, "
                             f"got {len(self.attention)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attention": list(self.attention)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Subnet":
        return cls(int(d["depth"]), int(d["embed_dim"]), int(d["num_heads"]), float(d["mlp_ratio"]),
                   tuple(d["attention"]))

    def name(self) -> str:
        """A short label: ``d5-w192-h3-r1.5-<one letter per layer's attention>``."""
        letters = "".join(p.split(".")[1][0] for p in self.attention)
        return f"d{self.depth}-w{self.embed_dim}-h{self.num_heads}-r{self.mlp_ratio:g}-{letters}"


@dataclass(frozen=True)
class SearchSpace:
    """The choices of each dimension (the largest of each is the supernet's)."""

    depths: tuple[int, ...]
    embed_dims: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    attentions: tuple[str, ...] = ATTENTIONS

    @classmethod
    def for_model(cls, base: VisionTransformer) -> "SearchSpace":
        """The default space of a ViT-Lite: half to all of its depth, width and heads, MLP
        ratios of half to all of its own, and the three attentions of :data:`ATTENTIONS`."""
        depth, dim = len(base.blocks), base.embed_dim
        heads, ratio = base.blocks[0].attn.num_heads, base.blocks[0].mlp.fc1.out_features / dim
        return cls(depths=tuple(range(max(1, depth // 2), depth + 1)),
                   embed_dims=tuple(sorted({dim // 2, 3 * dim // 4, dim})),
                   heads=tuple(range(max(1, heads // 2), heads + 1)),
                   mlp_ratios=tuple(sorted({ratio / 2, 3 * ratio / 4, ratio})))

    def check(self, base: VisionTransformer) -> None:
        """Raise unless every choice fits inside ``base``.

        Raises:
            UsageError: a choice larger than the supernet, or an unknown attention protocol.
        """
        import protocols

        limits = {"depths": len(base.blocks), "embed_dims": base.embed_dim, "heads": base.blocks[0].attn.num_heads,
                  "mlp_ratios": base.blocks[0].mlp.fc1.out_features / base.embed_dim}
        for field, limit in limits.items():
            if max(getattr(self, field)) > limit or min(getattr(self, field)) <= 0:
                raise UsageError(f"supernet space: {field} {getattr(self, field)} must lie in (0, {limit:g}]")
        for name in self.attentions:
            if name not in protocols.names() or protocols.get(name).kind != "softmax":
                raise UsageError(f"supernet space: {name!r} is not a softmax protocol of the registry")

    def largest(self) -> Subnet:
        """Every dimension at its largest, the first attention protocol everywhere."""
        depth = max(self.depths)
        return Subnet(depth, max(self.embed_dims), max(self.heads), max(self.mlp_ratios),
                      (self.attentions[0],) * depth)

    def sample(self, generator: torch.Generator) -> Subnet:
        """A subnet drawn uniformly, dimension by dimension and layer by layer."""
        def pick(choices: tuple) -> Any:
            return choices[int(torch.randint(len(choices), (), generator=generator))]

        depth = pick(self.depths)
        return Subnet(depth, pick(self.embed_dims), pick(self.heads), pick(self.mlp_ratios),
                      tuple(pick(self.attentions) for _ in range(depth)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchSpace":
        return cls(tuple(int(v) for v in d["depths"]), tuple(int(v) for v in d["embed_dims"]),
                   tuple(int(v) for v in d["heads"]), tuple(float(v) for v in d["mlp_ratios"]),
                   tuple(d["attentions"]))
