"""Weight inheritance (after TinyCLIP, Wu et al., ICCV 2023, manual inheritance): a
shallower and narrower ViT student initialised from a trained teacher, to be distilled.

Depth: the student keeps teacher blocks 0, s, 2s, ... with s = floor(L_t / L_s). MLP
width: each kept block keeps the hidden channels j of largest importance
||W1[j, :]||_1 * ||W2[:, j]||_1 (its weight into and out of the channel), in their
original order. Heads: each kept block keeps the heads h of largest importance
||W_qkv[rows of h]||_1 * ||W_proj[:, columns of h]||_1, at the teacher's head width.
Everything else (patch embedding, tokens, positions, norms, classifier) is copied.
Inheriting at full depth and width reproduces the teacher exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from ..errors import UsageError

__all__ = ["Inheritance", "inherit"]


@dataclass(frozen=True)
class Inheritance:
    """What the student kept: teacher block per student block, MLP channels per block."""

    layers: list[int]
    mlp_channels: list[list[int]]
    heads: list[list[int]]


def _top(importance: torch.Tensor, keep: int) -> list[int]:
    return sorted(torch.topk(importance, keep).indices.tolist())


def _head_columns(heads: list[int], head_dim: int) -> torch.Tensor:
    """Columns of the heads' outputs in the concatenated (heads x head_dim) attention output."""
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def _kept_heads(block: Block, keep: int) -> list[int]:
    attn = block.attn
    h, d = attn.num_heads, attn.head_dim
    qkv = attn.qkv.weight.abs().view(3, h, d, -1).sum((0, 2, 3))
    proj = attn.proj.weight.abs().view(-1, h, d).sum((0, 2))
    return _top(qkv * proj, keep)


@torch.no_grad()
def _copy_block(src: Block, dst: Block, channels: list[int], heads: list[int]) -> None:
    index = torch.tensor(channels)
    cols = _head_columns(heads, src.attn.head_dim)
    rows = torch.cat([part * src.attn.num_heads * src.attn.head_dim + cols for part in range(3)])  # q, k, v
    picks = {"mlp.fc1.weight": lambda w: w[index], "mlp.fc1.bias": lambda b: b[index],
             "mlp.fc2.weight": lambda w: w[:, index], "attn.qkv.weight": lambda w: w[rows],
             "attn.qkv.bias": lambda b: b[rows], "attn.proj.weight": lambda w: w[:, cols]}
    source = dict(src.named_parameters())
    for name, param in dst.named_parameters():
        param.copy_(picks.get(name, lambda t: t)(source[name]))


@torch.no_grad()
def inherit(teacher: VisionTransformer, student: VisionTransformer) -> Inheritance:
    """Fill ``student`` (same width, fewer or as many blocks and heads of the teacher's
    head width, MLP no wider) from ``teacher``.

    Raises:
        ValueError: the student is not a shallower / narrower copy of the teacher's design.
    """
    if not isinstance(teacher, VisionTransformer) or not isinstance(student, VisionTransformer):
        raise UsageError("weight inheritance needs plain timm VisionTransformers (inherit before rewriting)")
    depth_t, depth_s = len(teacher.blocks), len(student.blocks)
    hidden_t, hidden_s = teacher.blocks[0].mlp.fc1.out_features, student.blocks[0].mlp.fc1.out_features
    if not 1 <= depth_s <= depth_t or hidden_s > hidden_t or teacher.embed_dim != student.embed_dim:
        raise UsageError(f"student ({depth_s} blocks, MLP {hidden_s}, width {student.embed_dim}) is not a "
                         f"shallower/narrower teacher ({depth_t} blocks, MLP {hidden_t}, width {teacher.embed_dim})")
    t_attn, s_attn = teacher.blocks[0].attn, student.blocks[0].attn
    if s_attn.num_heads > t_attn.num_heads or s_attn.head_dim != t_attn.head_dim:
        raise UsageError(f"student heads ({s_attn.num_heads} x {s_attn.head_dim}) are not a subset of the teacher's "
                         f"({t_attn.num_heads} x {t_attn.head_dim}): build the student with head_dim={t_attn.head_dim}")
    stride = depth_t // depth_s
    layers = [i * stride for i in range(depth_s)]
    outside = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    student.load_state_dict(outside, strict=False)
    channels, heads = [], []
    for i, layer in enumerate(layers):
        block = teacher.blocks[layer]
        channels.append(_top(block.mlp.fc1.weight.abs().sum(1) * block.mlp.fc2.weight.abs().sum(0), hidden_s))
        heads.append(_kept_heads(block, s_attn.num_heads))
        _copy_block(block, student.blocks[i], channels[-1], heads[-1])
    return Inheritance(layers, channels, heads)
