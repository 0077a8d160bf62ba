"""Baseline: a timm ViT forward written directly against CrypTen, as a CrypTen user would.

This is the yardstick secvit's engine is compared to: the same network (a timm
``VisionTransformer`` with a class token, pre-norm blocks and ``global_pool='token'``),
all heads and batch items in one tensor op, and CrypTen's own functions throughout:

* softmax: ``CrypTensor.softmax`` (max by log-reduction, ``exp``, Newton-Raphson reciprocal);
* GELU: ``x * (1 + erf(x / sqrt 2)) / 2`` with CrypTen's ``erf`` (8 Maclaurin terms,
  which diverge beyond ``|x|`` of about 2.5);
* LayerNorm: ``(var + eps).inv_sqrt()`` with CrypTen's default 3 Newton-Raphson steps
  (accurate only for a row variance of roughly 0.1 and above).

Its cost is what the engine must not exceed; its outputs are not expected to be accurate.

Typical use inside a CrypTen party::

    params = encrypt_params(model, rank)            # model: a meta skeleton on rank != 0
    x = crypten.cryptensor(images_or_empty_of_that_shape, src=1)  # the shape is public
    logits = handwritten_forward(params, x, ViTConfig.from_model(model))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from protocols.backend import crypten

__all__ = ["CrypTensor", "ViTConfig", "encrypt_params", "handwritten_forward"]

CrypTensor = crypten.CrypTensor


@dataclass(frozen=True)
class ViTConfig:
    """The public architecture numbers the forward needs.

    Attributes:
        depth: Number of transformer blocks.
        heads: Attention heads per block.
        patch: Patch size (stride of the patch-embedding convolution).
        eps: LayerNorm epsilon.
    """

    depth: int
    heads: int
    patch: int
    eps: float = 1e-6

    @classmethod
    def from_model(cls, model: nn.Module) -> "ViTConfig":
        """Read the config off a timm ``VisionTransformer`` (plaintext or meta skeleton).

        Args:
            model: The model; only its structure is read.

        Returns:
            The model's :class:`ViTConfig`.
        """
        return cls(
            depth=len(model.blocks),
            heads=model.blocks[0].attn.num_heads,
            patch=model.patch_embed.patch_size[0],
            eps=model.norm.eps,
        )


def encrypt_params(model: nn.Module, rank: int, src: int = 0) -> dict[str, CrypTensor]:
    """Secret-share every parameter of ``model`` from party ``src``.

    Every party calls this. Only party ``src`` reads the values; the others read the
    shapes alone, so they may pass a ``meta``-device skeleton of the same architecture.

    Args:
        model: The plaintext model (on ``src``) or a skeleton of it.
        rank: This party's rank.
        src: The model owner's rank.

    Returns:
        The shared parameters by ``state_dict`` name.
    """
    return {
        name: crypten.cryptensor(p.float() if rank == src else torch.zeros(p.shape), src=src)
        for name, p in model.state_dict().items()
    }


def _linear(x: CrypTensor, p: dict[str, CrypTensor], name: str) -> CrypTensor:
    return x.matmul(p[f"{name}.weight"].t()) + p[f"{name}.bias"]


def _layer_norm(x: CrypTensor, p: dict[str, CrypTensor], name: str, eps: float) -> CrypTensor:
    centered = x - x.mean(-1, keepdim=True)
    var = centered.square().mean(-1, keepdim=True)
    return centered * (var + eps).inv_sqrt() * p[f"{name}.weight"] + p[f"{name}.bias"]


def _gelu(x: CrypTensor) -> CrypTensor:
    return x * (1 + (x / math.sqrt(2.0)).erf()) / 2


def handwritten_forward(params: dict[str, CrypTensor], x_enc: CrypTensor, cfg: ViTConfig) -> CrypTensor:
    """Encrypted forward of a timm ``VisionTransformer`` (class token, pre-norm).

    Args:
        params: Shared parameters from :func:`encrypt_params`.
        x_enc: Shared normalised images, shape (B, C, H, W).
        cfg: The architecture's :class:`ViTConfig`.

    Returns:
        Shared logits, shape (B, classes).
    """
    p = params
    x = x_enc.conv2d(p["patch_embed.proj.weight"], stride=cfg.patch)
    x = x + p["patch_embed.proj.bias"].view(1, -1, 1, 1)
    batch, dim = x.size(0), x.size(1)
    x = x.flatten(2).transpose(1, 2)  # (B, N - 1, D)
    x = crypten.cat([p["cls_token"].expand(batch, -1, -1), x], dim=1) + p["pos_embed"]
    tokens, head_dim = x.size(1), dim // cfg.heads
    scale = head_dim**-0.5
    for i in range(cfg.depth):
        b = f"blocks.{i}"
        h = _layer_norm(x, p, f"{b}.norm1", cfg.eps)
        qkv = _linear(h, p, f"{b}.attn.qkv").reshape(batch, tokens, 3, cfg.heads, head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, N, d)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * scale).matmul(k.transpose(-2, -1)).softmax(-1)
        h = attn.matmul(v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + _linear(h, p, f"{b}.attn.proj")
        h = _gelu(_linear(_layer_norm(x, p, f"{b}.norm2", cfg.eps), p, f"{b}.mlp.fc1"))
        x = x + _linear(h, p, f"{b}.mlp.fc2")
    x = _layer_norm(x, p, "norm", cfg.eps)
    return _linear(x[:, 0], p, "head")
