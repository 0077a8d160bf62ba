"""The supernet's weight-sharing forward pass, and the extraction of a subnet as an ordinary
ViT-Lite with the same outputs.

:func:`subnet_forward` runs a subnet on the supernet's weights, sliced (the first channels,
heads and hidden units; :mod:`.space`), with each layer's attention protocol as the rewritten
model computes it (the registry's reference kernel on ``(q · scale) kᵀ``). :func:`extract`
copies the same slices into a ViT-Lite built from ``model_args`` and rewrites it by the
subnet's policy: the two compute the same function (``tests/test_supernet.py``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

import protocols

from .space import SearchSpace, Subnet

__all__ = ["SuperViT", "extract", "subnet_args", "subnet_policy", "subnet_forward"]


def _head_dim(base: VisionTransformer) -> int:
    return base.blocks[0].attn.head_dim


def _hidden(subnet: Subnet) -> int:
    return int(subnet.embed_dim * subnet.mlp_ratio)  # as timm's Mlp sizes it


def _qkv_slice(base: VisionTransformer, layer: int, subnet: Subnet) -> tuple[torch.Tensor, torch.Tensor]:
    """The q, k, v rows of the first heads and the first input channels of a layer's qkv."""
    qkv = base.blocks[layer].attn.qkv
    width, inner = base.embed_dim, subnet.num_heads * _head_dim(base)
    weight = qkv.weight.view(3, width, width)[:, :inner, :subnet.embed_dim].reshape(3 * inner, subnet.embed_dim)
    return weight, qkv.bias.view(3, width)[:, :inner].reshape(3 * inner)


def _norm(norm: nn.LayerNorm, x: torch.Tensor, dim: int) -> torch.Tensor:
    return F.layer_norm(x, (dim,), norm.weight[:dim], norm.bias[:dim], norm.eps)


def subnet_forward(base: VisionTransformer, subnet: Subnet, x: torch.Tensor) -> torch.Tensor:
    """The logits of ``subnet`` on images ``x``, computed on ``base``'s sliced weights."""
    e, hd, heads, hidden = subnet.embed_dim, _head_dim(base), subnet.num_heads, _hidden(subnet)
    proj = base.patch_embed.proj
    t = F.conv2d(x, proj.weight[:e], proj.bias[:e], stride=proj.stride).flatten(2).transpose(1, 2)
    t = torch.cat([base.cls_token[..., :e].expand(len(x), -1, -1), t], 1) + base.pos_embed[..., :e]
    b, n, _ = t.shape
    for layer, protocol in enumerate(subnet.attention):
        block = base.blocks[layer]
        weight, bias = _qkv_slice(base, layer, subnet)
        q, k, v = F.linear(_norm(block.norm1, t, e), weight, bias).view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        attn = protocols.get(protocol).reference((q * block.attn.scale) @ k.transpose(-2, -1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, heads * hd)
        t = t + F.linear(out, block.attn.proj.weight[:e, :heads * hd], block.attn.proj.bias[:e])
        mlp = block.mlp
        h = mlp.act(F.linear(_norm(block.norm2, t, e), mlp.fc1.weight[:hidden, :e], mlp.fc1.bias[:hidden]))
        t = t + F.linear(h, mlp.fc2.weight[:e, :hidden], mlp.fc2.bias[:e])
    return F.linear(_norm(base.norm, t, e)[:, 0], base.head.weight[:, :e], base.head.bias)


def subnet_args(base: VisionTransformer, subnet: Subnet) -> dict:
    """The ``model_args`` of the extracted ViT-Lite (``head_dim`` kept at the supernet's)."""
    args = {"num_classes": base.num_classes, "depth": subnet.depth, "embed_dim": subnet.embed_dim,
            "num_heads": subnet.num_heads, "mlp_ratio": subnet.mlp_ratio}
    return args if subnet.num_heads * _head_dim(base) == subnet.embed_dim else {**args, "head_dim": _head_dim(base)}


def subnet_policy(subnet: Subnet) -> dict:
    """The rewrite policy of a subnet: its attention per layer, exact GELU and LayerNorm."""
    return {"name": f"supernet-{subnet.name()}", "description": "a subnet of secvit supernet search",
            "attention": {"default": subnet.attention[0], "layers": dict(enumerate(subnet.attention))},
            "activation": {"default": "gelu.exact"}, "norm": {"default": "norm.layer"}}


@torch.no_grad()
def extract(base: VisionTransformer, subnet: Subnet, build: Callable[..., VisionTransformer],
            inherit: bool = True) -> nn.Module:
    """``subnet`` as a ViT-Lite of its own (``build(**subnet_args)``) holding the supernet's
    slices (``inherit``; its fresh initialisation otherwise), rewritten by :func:`subnet_policy`."""
    from ..rewrite import rewrite
    from ..rewrite.policy import policy_from_dict

    e, hd, hidden = subnet.embed_dim, _head_dim(base), _hidden(subnet)
    model = build(**subnet_args(base, subnet))
    if not inherit:
        return rewrite(model.eval(), policy_from_dict(subnet_policy(subnet)))[0]
    model.patch_embed.proj.weight.copy_(base.patch_embed.proj.weight[:e])
    model.patch_embed.proj.bias.copy_(base.patch_embed.proj.bias[:e])
    model.cls_token.copy_(base.cls_token[..., :e])
    model.pos_embed.copy_(base.pos_embed[..., :e])
    for layer, block in enumerate(model.blocks):
        source = base.blocks[layer]
        weight, bias = _qkv_slice(base, layer, subnet)
        block.attn.qkv.weight.copy_(weight)
        block.attn.qkv.bias.copy_(bias)
        inner = subnet.num_heads * hd
        pairs = ((block.norm1.weight, source.norm1.weight[:e]), (block.norm1.bias, source.norm1.bias[:e]),
                 (block.attn.proj.weight, source.attn.proj.weight[:e, :inner]),
                 (block.attn.proj.bias, source.attn.proj.bias[:e]),
                 (block.norm2.weight, source.norm2.weight[:e]), (block.norm2.bias, source.norm2.bias[:e]),
                 (block.mlp.fc1.weight, source.mlp.fc1.weight[:hidden, :e]),
                 (block.mlp.fc1.bias, source.mlp.fc1.bias[:hidden]),
                 (block.mlp.fc2.weight, source.mlp.fc2.weight[:e, :hidden]),
                 (block.mlp.fc2.bias, source.mlp.fc2.bias[:e]))
        for target, value in pairs:
            target.copy_(value)
    model.norm.weight.copy_(base.norm.weight[:e])
    model.norm.bias.copy_(base.norm.bias[:e])
    model.head.weight.copy_(base.head.weight[:, :e])
    model.head.bias.copy_(base.head.bias)
    return rewrite(model.eval(), policy_from_dict(subnet_policy(subnet)))[0]


class SuperViT(nn.Module):
    """A ViT-Lite trained as a supernet: in training each forward runs ``config`` (the
    sampler sets it before every step through :meth:`schedule`), in evaluation ``eval_config``
    (the largest subnet unless set)."""

    def __init__(self, base: VisionTransformer, space: SearchSpace):
        super().__init__()
        space.check(base)
        self.base, self.space = base, space
        self.config = self.eval_config = space.largest()
        self.__dict__["sampler"] = None  # a ComplexityAwareSampler, set by training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return subnet_forward(self.base, self.config if self.training else self.eval_config, x)

    def get_extra_state(self) -> dict:
        """The sampler's state, in :meth:`state_dict` (so a resumed run draws on as before)."""
        return self.sampler.state_dict() if self.sampler is not None else {}

    def set_extra_state(self, state: dict) -> None:
        """Restore :meth:`get_extra_state`'s record into the sampler."""
        if self.sampler is not None:
            self.sampler.load_state_dict(state)

    def schedule(self, progress: float) -> None:
        """Draw the next step's subnet from the sampler (called by ``fit`` before every step)."""
        if self.sampler is not None:
            self.config = self.sampler.next(self)
