"""MPC-friendly modules: plaintext ``nn.Module``s whose secure twins run under MPC.

Each holds protocol names from the registry (:mod:`protocols`). In plaintext they run the
protocols' differentiable reference kernels (training, accuracy); the secure lowering
(:mod:`secvit.secure.lowering`) runs the same protocols' secure kernels.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

import protocols

__all__ = ["MPCActivation", "MPCAttention", "MPCNorm", "head_groups"]


def head_groups(head_protocols: list[str]) -> "OrderedDict[str, list[int]]":
    """Heads per protocol, in first-use order: each group runs as one batched op."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for head, name in enumerate(head_protocols):
        groups.setdefault(name, []).append(head)
    return groups


class MPCAttention(nn.Module):
    """Multi-head self-attention with one softmax protocol per head (heterogeneous).

    Replaces timm's ``Attention`` (same ``qkv`` and ``proj`` weights). Heads sharing a
    protocol are computed in one tensor op; a model with two protocols costs two ops
    per layer, never one per head.

    Args:
        attn: The timm ``Attention`` to replace (plain q/k, no q/k norm).
        head_protocols: One softmax-kind protocol name per head.
    """

    def __init__(self, attn: nn.Module, head_protocols: list[str]):
        super().__init__()
        if len(head_protocols) != attn.num_heads:
            raise ValueError(f"{len(head_protocols)} head protocols for {attn.num_heads} heads")
        if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.norm, nn.Identity):
            raise ValueError("MPCAttention supports attention without q/k or output norms")
        self.qkv, self.proj = attn.qkv, attn.proj
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.head_protocols = list(head_protocols)
        for name in self.head_protocols:
            if protocols.get(name).kind != "softmax":
                raise ValueError(f"{name} is not a softmax protocol")

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("MPCAttention does not support attention masks")
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        attn = torch.empty_like(logits)
        for name, heads in head_groups(self.head_protocols).items():
            attn[:, heads] = protocols.get(name).reference(logits[:, heads])
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))

    def extra_repr(self) -> str:
        return f"heads={self.head_protocols}"


class MPCActivation(nn.Module):
    """Elementwise activation by an ``activation``-kind protocol (replaces GELU)."""

    def __init__(self, protocol: str):
        super().__init__()
        if protocols.get(protocol).kind != "activation":
            raise ValueError(f"{protocol} is not an activation protocol")
        self.protocol = protocol

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return protocols.get(self.protocol).reference(x)

    def extra_repr(self) -> str:
        return self.protocol


class MPCNorm(nn.Module):
    """Normalisation over the last dim by a ``norm``-kind protocol (replaces LayerNorm).

    ``weight``/``bias`` start from the LayerNorm's affine (or none after folding).
    """

    def __init__(self, norm: nn.LayerNorm, protocol: str):
        super().__init__()
        if protocols.get(protocol).kind != "norm":
            raise ValueError(f"{protocol} is not a norm protocol")
        self.protocol, self.eps = protocol, norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone()) if norm.weight is not None else None
        self.bias = nn.Parameter(norm.bias.detach().clone()) if norm.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return protocols.get(self.protocol).reference(x, self.weight, self.bias, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.protocol}, affine={self.weight is not None}"
