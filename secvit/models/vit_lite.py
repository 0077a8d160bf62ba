"""ViT-Lite: the compact ViTs of MPCViT (Zeng et al., ICCV 2023), after Hassani et al.,
"Escaping the Big Data Paradigm with Compact Transformers" (2021).

A plain pre-norm ViT with a CLS token and a learned positional embedding, built on
timm's ``VisionTransformer`` so that every timm-based pass applies unchanged. Names read
``vit_lite_{depth}_{heads}_{img_size}``; ``vit_lite_7_4_32`` is MPCViT's CIFAR model
(7 layers, 4 heads, width 256, MLP ratio 2, patch 4, 32x32 input, 65 tokens).
"""

from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import Attention, VisionTransformer

from .class_attention import ClassAttentionViT
from ..glca import GLCAVisionTransformer
from .registry import register_model

__all__ = ["vit_lite", "vit_lite_1_2_16", "vit_lite_2_2_32", "vit_lite_6_4_28", "vit_lite_7_4_32"]


def vit_lite(
    depth: int,
    num_heads: int,
    embed_dim: int,
    img_size: int = 32,
    patch_size: int = 4,
    mlp_ratio: float = 2.0,
    num_classes: int = 10,
    in_chans: int = 3,
    head_dim: int | None = None,
    glca: bool = False,
    class_attention: bool = False,
    **kwargs: Any,
) -> VisionTransformer:
    """Build a ViT-Lite (CLS token, learned positions, qkv bias, pre-norm blocks).

    ``head_dim`` fixes each head's width independently of ``embed_dim`` (default
    ``embed_dim // num_heads``): a student with fewer heads than its teacher keeps the
    teacher's head width (:mod:`secvit.compress.inherit`). ``glca`` adds DCAL's
    global-local cross-attention branch (:mod:`secvit.glca`); ``class_attention`` makes the
    last block CaiT's class attention (:mod:`secvit.models.class_attention`).
    """
    if (glca or class_attention) and head_dim is not None:
        raise ValueError("a GLCA branch or class-attention block needs the default head width (embed_dim // num_heads)")
    if glca and class_attention:
        raise ValueError("glca and class_attention do not go together")
    model = (GLCAVisionTransformer if glca else ClassAttentionViT if class_attention else VisionTransformer)(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads if head_dim is None else 1,  # timm needs heads dividing the width; replaced below
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
        **kwargs,
    )
    if head_dim is not None:
        for block in model.blocks:
            block.attn = Attention(embed_dim, num_heads, attn_head_dim=head_dim, qkv_bias=True)
    return model


@register_model
def vit_lite_7_4_32(**kwargs: Any) -> VisionTransformer:
    """MPCViT's ViT-Lite: 7 layers, 4 heads, width 256, patch 4, 32x32 input."""
    return vit_lite(**{"depth": 7, "num_heads": 4, "embed_dim": 256, **kwargs})


@register_model
def vit_lite_6_4_28(**kwargs: Any) -> VisionTransformer:
    """A grey-scale ViT-Lite for 28x28 images (Fashion-MNIST): 6 layers, 4 heads, width 128,
    patch 4 (50 tokens), MLP ratio 2, one input channel; 0.8 M weights."""
    return vit_lite(**{"depth": 6, "num_heads": 4, "embed_dim": 128, "img_size": 28, "in_chans": 1, **kwargs})


@register_model
def vit_lite_2_2_32(**kwargs: Any) -> VisionTransformer:
    """A 2-layer, 2-head, width-64 ViT-Lite for fast tests (32x32 input, 65 tokens)."""
    return vit_lite(**{"depth": 2, "num_heads": 2, "embed_dim": 64, **kwargs})


@register_model
def vit_lite_1_2_16(**kwargs: Any) -> VisionTransformer:
    """A 1-layer, 2-head, width-32 ViT-Lite on 16x16 input (17 tokens): the smallest test model."""
    return vit_lite(**{"depth": 1, "num_heads": 2, "embed_dim": 32, "img_size": 16, **kwargs})
