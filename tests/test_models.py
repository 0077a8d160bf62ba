"""Every registered model builds, traces exactly and names its errors."""

from __future__ import annotations

import pytest
import torch

from secvit.models import create_model, list_models
from secvit.tracing import trace

from .conftest import in_chans


@pytest.mark.parametrize("name", list_models())
def test_registered_model_traces_exactly(name: str):
    model = create_model(name).eval()
    size = model.patch_embed.img_size
    x = torch.randn(2, in_chans(model), *size)
    with torch.no_grad():
        assert torch.equal(trace(model)(x), model(x))
    ops = {n.target for n in trace(model.blocks[0].attn).graph.nodes if n.op == "call_method"}
    assert "softmax" in ops, "fused attention must be off so that softmax is visible"


def test_vit_lite_7_4_32_matches_mpcvit_shape():
    model = create_model("vit_lite_7_4_32")
    assert len(model.blocks) == 7 and model.blocks[0].attn.num_heads == 4
    assert model.embed_dim == 256 and model.blocks[0].mlp.fc1.out_features == 512
    assert model.patch_embed.num_patches + 1 == 65


def test_timm_model_by_name_with_overrides():
    model = create_model("deit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=10)
    assert model.patch_embed.img_size == (32, 32) and model.head.out_features == 10


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model 'vit_lite_9_9_99'"):
        create_model("vit_lite_9_9_99")


def test_registering_twice_raises():
    from secvit.models.registry import register_model
    from secvit.models.vit_lite import vit_lite_7_4_32

    with pytest.raises(ValueError, match="already registered"):
        register_model(vit_lite_7_4_32)
