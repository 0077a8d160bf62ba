"""Baseline: a ViT-Lite forward written directly against CrypTen, as a CrypTen user would.

This is the yardstick for secvit's engine (issue [1 of 4]): the same network, every head
and batch item in one tensor op, CrypTen's own functions throughout: ``softmax``
(comparison-tree max, exp, Newton-Raphson reciprocal), GELU through ``erf`` (8 Taylor
terms) and LayerNorm through ``inv_sqrt`` (3 Newton-Raphson steps). Its cost is what
the engine must not exceed; its numbers are not trusted (erf diverges beyond |x| = 2.5,
and 3 steps of inv_sqrt fail below a row variance of 0.126).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from protocols.backend import crypten

__all__ = ["encrypt_params", "handwritten_forward"]


def encrypt_params(model: nn.Module | None, shapes: dict[str, torch.Size], rank: int) -> dict[str, Any]:
    """Share every parameter from party 0 (other parties pass ``model=None``)."""
    state = model.state_dict() if model is not None else {}
    return {k: crypten.cryptensor(state[k].float() if rank == 0 else torch.zeros(s), src=0) for k, s in shapes.items()}


def _layer_norm(x, w, b, eps: float = 1e-6):
    mean = x.mean(-1, keepdim=True)
    centered = x - mean
    var = centered.square().mean(-1, keepdim=True)
    return centered * (var + eps).inv_sqrt() * w + b


def _linear(x, p: dict[str, Any], name: str):
    return x.matmul(p[f"{name}.weight"].t()) + p[f"{name}.bias"]


def handwritten_forward(p: dict[str, Any], x, depth: int, heads: int, patch: int):
    """Forward of a timm ``VisionTransformer`` (CLS token, pre-norm) on CrypTensors."""
    x = x.conv2d(p["patch_embed.proj.weight"], stride=patch) + p["patch_embed.proj.bias"].view(1, -1, 1, 1)
    batch, dim = x.size(0), x.size(1)
    x = x.flatten(2).transpose(1, 2)
    cls = p["cls_token"].expand(batch, -1, -1)
    x = crypten.cat([cls, x], dim=1) + p["pos_embed"]
    tokens, head_dim = x.size(1), dim // heads
    for i in range(depth):
        b = f"blocks.{i}"
        h = _layer_norm(x, p[f"{b}.norm1.weight"], p[f"{b}.norm1.bias"])
        qkv = _linear(h, p, f"{b}.attn.qkv").reshape(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (1.0 / math.sqrt(head_dim))).matmul(k.transpose(-2, -1)).softmax(-1)
        h = attn.matmul(v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + _linear(h, p, f"{b}.attn.proj")
        h = _linear(_layer_norm(x, p[f"{b}.norm2.weight"], p[f"{b}.norm2.bias"]), p, f"{b}.mlp.fc1")
        h = h * ((h * (1.0 / math.sqrt(2.0))).erf() + 1.0) * 0.5
        x = x + _linear(h, p, f"{b}.mlp.fc2")
    x = _layer_norm(x, p["norm.weight"], p["norm.bias"])
    return _linear(x[:, 0], p, "head")
