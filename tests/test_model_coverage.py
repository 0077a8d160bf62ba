"""Every supported architecture: trace, rewrite (heterogeneous heads, folded affines) and
a secure forward that agrees with the rewritten plaintext model."""

from __future__ import annotations

import pytest
import torch

from secvit.models import create_model, list_models
from secvit.mpc_modules import MPC_MODULES
from secvit.rewrite import rewrite
from secvit.rewrite.policy import policy_from_dict
from secvit.ops import UnsupportedOpError
from secvit.secure.plan import SecurePlan
from secvit.rewrite.passes.attention import ATTENTION_TYPES

from .conftest import in_chans, secure_logits

TIMM = {
    "vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
    "deit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
    "deit_tiny_distilled_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
    "tiny_vit_5m_224": {"num_classes": 10},  # conv stages, BatchNorm, windows padded at 64x64
}
INPUT_SIZE = {"tiny_vit_5m_224": (64, 64)}
MODELS = {**{name: {} for name in list_models()}, **TIMM}


def _policy(heads: int, layers: int):
    mixed = ["softmax.relu", "softmax.scaling"] * (heads // 2) + ["softmax.exact"] * (heads % 2)
    return policy_from_dict({
        "attention": {"default": "softmax.exact", "heads": {0: mixed}},
        "activation": {"default": "gelu.exact", "layers": {layers - 1: "gelu.quad"}},
        "norm": {"default": "norm.layer", "fold_affine": True},
    })


def _trained_scale(model: torch.nn.Module, size: tuple[int, int]) -> None:
    """timm starts CLS/dist tokens, position embeddings, TinyViT's position biases and
    residual BatchNorm scales near zero, and BatchNorm statistics at (0, 1): give them a
    trained model's scale (statistics from a few batches) so that the test exercises them
    with activations in the protocols' ranges."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("cls_token", "dist_token"):
                p.normal_(0, 1)
            elif name == "pos_embed" or name.endswith("attention_biases"):
                p.normal_(0, 0.5)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
            bn.weight.fill_(1.0)
        if norms:
            model.train()
            for _ in range(4):
                model(torch.rand(8, in_chans(model), *size))
    model.eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trace_rewrite_secure_forward(name: str):
    torch.manual_seed(0)
    model = create_model(name, **MODELS[name]).eval()
    size = INPUT_SIZE.get(name) or model.patch_embed.img_size
    _trained_scale(model, size)
    attentions = [m for m in model.modules() if isinstance(m, ATTENTION_TYPES)]
    gm, report = rewrite(model, _policy(min(a.num_heads for a in attentions), len(attentions)))
    assert all(p.changed for p in report.passes if p.name != "replace_calls")  # timm calls no softmax function
    assert len(report.passes[0].changes) == len(attentions)
    x = torch.rand(1, in_chans(model), *size)
    with torch.no_grad():
        ref = gm(x)
    assert (secure_logits(gm, x) - ref).abs().max() < 0.05


def test_a_plain_model_is_rewritten_exact_first():
    """One route: the plan rewrites plain attentions, GELUs and LayerNorms (TinyViT's inside
    its per-shape blocks included) by the exact policy; the model itself is untouched."""
    model = create_model("tiny_vit_5m_224", num_classes=10)
    plan = SecurePlan(model)
    assert not any(isinstance(m, MPC_MODULES) for m in model.modules())
    protocols_used = {name for m in plan.model.modules() if isinstance(m, MPC_MODULES)
                      for name in getattr(m, "head_protocols", [getattr(m, "protocol", None)])}
    assert protocols_used == {"softmax.exact", "gelu.exact", "norm.layer"}
    assert not any(isinstance(m, (torch.nn.GELU, torch.nn.LayerNorm, *ATTENTION_TYPES)) for m in plan.model.modules())


class _OtherDimSoftmax(torch.nn.Module):
    def forward(self, x):
        return x.softmax(1)


class _FunctionalNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))

    def forward(self, x):
        return torch.nn.functional.layer_norm(x, (4,), self.weight)


@pytest.mark.parametrize("module, message", [(_OtherDimSoftmax(), "last dimension only"),
                                             (_FunctionalNorm(), "use nn.LayerNorm")])
def test_what_the_engine_refuses_is_named(module, message):
    with pytest.raises(UnsupportedOpError, match=message):
        SecurePlan(torch.nn.Sequential(torch.nn.Linear(4, 4), module))


PLAIN_ROUTE = {  # attentions the policies do not rewrite: the exact route (softmax calls and modules replaced)
    "deit3_small_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10, "depth": 2},  # LayerScale
    "beit_base_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10, "depth": 2, "embed_dim": 192,
                              "num_heads": 3},  # relative position bias; q/v biases by F.linear
    "swin_tiny_patch4_window7_224": {"img_size": 56, "num_classes": 10, "depths": (2, 2), "num_heads": (3, 6),
                                     "embed_dim": 48},  # shifted windows: torch.roll, the -100 mask
    "eva02_tiny_patch14_224": {"img_size": 28, "patch_size": 14, "num_classes": 10, "depth": 2},  # SwiGLU, rotary
    "levit_128s": {"img_size": 64, "num_classes": 10},  # Hardswish, BatchNorm1d, attention biases
}


@pytest.mark.parametrize("name", sorted(PLAIN_ROUTE))
def test_plain_timm_architectures_run_under_mpc(name: str):
    torch.manual_seed(0)
    model = create_model(name, **PLAIN_ROUTE[name]).eval()
    size = (PLAIN_ROUTE[name]["img_size"],) * 2
    _trained_scale(model, size)
    x = torch.rand(1, in_chans(model), *size)
    with torch.no_grad():
        ref = model(x)
    assert (secure_logits(model, x) - ref).abs().max() < 0.05
