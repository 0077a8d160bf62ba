"""Weight inheritance (after TinyCLIP, Wu et al., ICCV 2023, manual inheritance): a
shallower and narrower ViT student initialised from a trained teacher, to be distilled.

Depth: the student keeps teacher blocks 0, s, 2s, ... with s = floor(L_t / L_s). MLP
width: each kept block keeps the hidden channels j of largest importance
||W1[j, :]||_1 * ||W2[:, j]||_1 (its weight into and out of the channel), in their
original order. Everything else (patch embedding, tokens, positions, attention, norms,
head) is copied. Inheriting at full depth and width reproduces the teacher exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block, VisionTransformer

__all__ = ["Inheritance", "inherit"]


@dataclass(frozen=True)
class Inheritance:
    """What the student kept: teacher block per student block, MLP channels per block."""

    layers: list[int]
    mlp_channels: list[list[int]]


def _mlp_channels(block: Block, keep: int) -> list[int]:
    importance = block.mlp.fc1.weight.abs().sum(1) * block.mlp.fc2.weight.abs().sum(0)
    return sorted(torch.topk(importance, keep).indices.tolist())


@torch.no_grad()
def _copy_block(src: Block, dst: Block, channels: list[int]) -> None:
    index = torch.tensor(channels)
    mlp_params = {"mlp.fc1.weight": lambda w: w[index], "mlp.fc1.bias": lambda b: b[index],
                  "mlp.fc2.weight": lambda w: w[:, index]}
    source = dict(src.named_parameters())
    for name, param in dst.named_parameters():
        param.copy_(mlp_params.get(name, lambda t: t)(source[name]))


@torch.no_grad()
def inherit(teacher: VisionTransformer, student: VisionTransformer) -> Inheritance:
    """Fill ``student`` (same width, fewer or as many blocks, MLP no wider) from ``teacher``.

    Raises:
        ValueError: the student is not a shallower / narrower copy of the teacher's design.
    """
    if not isinstance(teacher, VisionTransformer) or not isinstance(student, VisionTransformer):
        raise ValueError("weight inheritance needs plain timm VisionTransformers (inherit before rewriting)")
    depth_t, depth_s = len(teacher.blocks), len(student.blocks)
    hidden_t, hidden_s = teacher.blocks[0].mlp.fc1.out_features, student.blocks[0].mlp.fc1.out_features
    if not 1 <= depth_s <= depth_t or hidden_s > hidden_t or teacher.embed_dim != student.embed_dim:
        raise ValueError(f"student ({depth_s} blocks, MLP {hidden_s}, width {student.embed_dim}) is not a "
                         f"shallower/narrower teacher ({depth_t} blocks, MLP {hidden_t}, width {teacher.embed_dim})")
    stride = depth_t // depth_s
    layers = [i * stride for i in range(depth_s)]
    outside = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    student.load_state_dict(outside, strict=False)
    channels = []
    for i, layer in enumerate(layers):
        channels.append(_mlp_channels(teacher.blocks[layer], hidden_s))
        _copy_block(teacher.blocks[layer], student.blocks[i], channels[-1])
    return Inheritance(layers, channels)
