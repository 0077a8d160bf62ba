"""Every supported architecture: trace, rewrite (heterogeneous heads, folded affines) and
a secure forward that agrees with the rewritten plaintext model."""

from __future__ import annotations

import pytest
import torch

from secvit.models import create_model, list_models
from secvit.rewrite import rewrite
from secvit.rewrite.policy import policy_from_dict

from .conftest import secure_logits

TIMM = {
    "vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
    "deit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
    "deit_tiny_distilled_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
}
MODELS = {**{name: {} for name in list_models()}, **TIMM}


def _policy(heads: int, layers: int):
    mixed = ["softmax.relu", "softmax.scaling"] * (heads // 2) + ["softmax.exact"] * (heads % 2)
    return policy_from_dict({
        "attention": {"default": "softmax.exact", "heads": {0: mixed}},
        "activation": {"default": "gelu.exact", "layers": {layers - 1: "gelu.quad"}},
        "norm": {"default": "norm.layer", "fold_affine": True},
    })


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trace_rewrite_secure_forward(name: str):
    torch.manual_seed(0)
    model = create_model(name, **MODELS[name]).eval()
    with torch.no_grad():  # timm starts the CLS/dist tokens near zero: give them a trained model's scale
        for token in ("cls_token", "dist_token"):
            if getattr(model, token, None) is not None:
                getattr(model, token).normal_(0, 1)
        model.pos_embed.normal_(0, 0.5)
    gm, report = rewrite(model, _policy(model.blocks[0].attn.num_heads, len(model.blocks)))
    assert all(p.changed for p in report.passes)
    size = model.patch_embed.img_size
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        ref = gm(x)
    assert (secure_logits(gm, x) - ref).abs().max() < 0.05
