"""A ViT whose last block is a class-attention block (CaiT: Touvron et al., "Going deeper with
Image Transformers", ICCV 2021): the first ``depth - 1`` blocks are self-attention over all
tokens, the last updates the CLS token only (its query is the CLS token, its keys and values
every token), and the head reads that token.

This is the architecture of exemplar-free continual learning with gated class-attention
(:mod:`secvit.continual.gates`): the gates are folded into the block's weights when training
ends, so the shipped model is this plain one, run under MPC like any other (its softmax and
norms are rewritten and lowered as in every block; the class-attention query is one row per
image).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.cait import LayerScaleBlockClassAttn
from timm.models.vision_transformer import VisionTransformer

__all__ = ["ClassAttentionViT"]


class ClassAttentionViT(VisionTransformer):
    """``VisionTransformer`` with ``depth - 1`` blocks, then ``class_block`` (CaiT's
    ``LayerScaleBlockClassAttn``, unit layer scales, shaped after the other blocks)."""

    def __init__(self, *args: Any, depth: int = 2, **kwargs: Any):
        if depth < 2:
            raise ValueError(f"a class-attention ViT needs depth >= 2 (one self-attention block, then class "
                             f"attention), got {depth}")
        super().__init__(*args, depth=depth - 1, **kwargs)
        last = self.blocks[-1]
        self.class_block = LayerScaleBlockClassAttn(
            self.embed_dim, last.attn.num_heads, mlp_ratio=last.mlp.fc1.out_features / self.embed_dim,
            qkv_bias=last.attn.qkv.bias is not None, init_values=1.0)
        self.class_block.attn.fused_attn = False  # softmax visible to tracing, as in every attention secvit rewrites

    def forward_features(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                         is_causal: bool = False) -> torch.Tensor:
        """The normalised CLS token after the class-attention block, shape (B, 1, D)."""
        x = self.blocks(self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x)))))
        prefix = self.num_prefix_tokens
        return self.norm(self.class_block(x[:, prefix:], x[:, :prefix]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
