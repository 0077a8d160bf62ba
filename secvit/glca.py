"""Global-local cross-attention (GLCA) of DCAL (Zhu et al., "Dual Cross-Attention Learning
for Fine-Grained Visual Categorization and Object Re-Identification", CVPR 2022): a second
branch after the last block whose queries are the tokens of highest accumulated attention
(attention rollout from the CLS token, the top R) and whose keys and values are all the
tokens; it is classified from its CLS token, and the prediction adds both branches.

What reaches the classifier is the CLS row of the cross-attention, then the MLP on that
row. Attention rows are independent: the CLS row of ``softmax(Q_l K_g^T) V_g`` is
``softmax(q_cls K_g^T) V_g`` whatever the other local queries are, and the MLP acts per
token, so the rollout's selection changes only rows that no output reads. The branch's
output is therefore a class-attention block (CaiT's ``LayerScaleBlockClassAttn``: the CLS
query against every token, then its MLP) with unit layer scales, and under MPC it needs
no rollout and no oblivious top-R selection: one query row per image, whose cost the
profiler reports as the ``glca`` nodes (``tests/test_glca.py`` checks the equality with
the top-R form, selection by rollout included, and a secure forward).

The branch is added to a trained ViT by :func:`add_glca` (``secvit train --glca``): its
block starts as a copy of the last block, its norm as the final norm, its head at zero
(the model's logits start unchanged), and the model is fine-tuned on the sum of the
branches' logits (DCAL's inference rule; the paper weighs the branches' losses instead).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.models.cait import LayerScaleBlockClassAttn
from timm.models.vision_transformer import VisionTransformer

from .errors import UsageError

__all__ = ["GLCAVisionTransformer", "add_glca"]


class GLCAVisionTransformer(VisionTransformer):
    """A ViT with DCAL's GLCA branch after its blocks (``glca``, ``glca_norm``, ``glca_head``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _attach_branch(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        x = self.blocks(x)
        local = self.glca(x[:, self.num_prefix_tokens:], x[:, :self.num_prefix_tokens])
        return self.forward_head(self.norm(x)) + self.glca_head(self.glca_norm(local)[:, 0])


def _attach_branch(model: VisionTransformer) -> None:
    """The branch's modules, shaped after ``model``'s last block (fresh weights)."""
    dim, last = model.embed_dim, model.blocks[-1]
    model.glca = LayerScaleBlockClassAttn(dim, last.attn.num_heads, mlp_ratio=last.mlp.fc1.out_features / dim,
                                          qkv_bias=last.attn.qkv.bias is not None, init_values=1.0)
    model.glca.attn.fused_attn = False  # softmax visible to tracing, as in every attention secvit rewrites
    model.glca_norm = nn.LayerNorm(dim, eps=model.norm.eps)
    model.glca_head = nn.Linear(dim, model.num_classes)


def add_glca(model: nn.Module) -> GLCAVisionTransformer:
    """``model`` (a trained plain ViT-Lite / timm ViT with a CLS token) with a GLCA branch
    initialised from its last block, final norm and a zero head: the same logits.

    Raises:
        UsageError: not a CLS-token ViT, or one already rewritten or with a GLCA branch.
    """
    if type(model) is not VisionTransformer or model.global_pool != "token" or model.num_prefix_tokens != 1:
        raise UsageError("--glca needs a plain ViT classified from its CLS token (ViT-Lite, timm vit_*/deit_*), "
                         f"got {type(model).__name__}; add it before any rewrite (--policy) or grouping (--gqa)")
    last = model.blocks[-1]
    if type(last.attn).__name__ != "Attention" or not isinstance(last.norm1, nn.LayerNorm):
        raise UsageError("--glca needs the last block's attention and LayerNorm unrewritten")
    model.__class__ = GLCAVisionTransformer
    _attach_branch(model)
    dim = model.embed_dim
    with torch.no_grad():
        for name in ("q", "k", "v"):
            part = "qkv".index(name)
            getattr(model.glca.attn, name).weight.copy_(last.attn.qkv.weight[part * dim:(part + 1) * dim])
            if last.attn.qkv.bias is not None:
                getattr(model.glca.attn, name).bias.copy_(last.attn.qkv.bias[part * dim:(part + 1) * dim])
        for target, source in ((model.glca.attn.proj, last.attn.proj), (model.glca.norm1, last.norm1),
                               (model.glca.norm2, last.norm2), (model.glca.mlp, last.mlp),
                               (model.glca_norm, model.norm)):
            target.load_state_dict(source.state_dict())
        model.glca_head.weight.zero_()
        model.glca_head.bias.zero_()
    return model
