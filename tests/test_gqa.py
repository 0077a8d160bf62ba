"""Grouped-query attention by conversion: exact where the heads already agree, the same
under MPC, persisted in checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from secvit import cli
from secvit.checkpoint import load_model
from secvit.gqa import to_gqa
from secvit.models import create_model
from secvit.mpc_modules import MPCAttention
from secvit.rewrite import load_policy, rewrite

from .conftest import secure_logits


def _rewritten(name: str = "vit_lite_2_2_32"):
    torch.manual_seed(0)
    return rewrite(create_model(name).eval(), load_policy("exact"))[0]


def test_one_group_per_head_is_the_original():
    gm = _rewritten()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = gm(x)
        after = to_gqa(gm, 2)(x)
    assert torch.equal(before, after)


def test_heads_that_share_k_and_v_lose_nothing_when_grouped():
    gm = _rewritten()
    with torch.no_grad():
        for attn in (m for m in gm.modules() if isinstance(m, MPCAttention)):
            d, h = attn.head_dim, attn.num_heads
            for part in (1, 2):  # K rows, then V rows: head 1 := head 0
                rows = slice(part * h * d, (part + 1) * h * d)
                attn.qkv.weight[rows][d:] = attn.qkv.weight[rows][:d]
                attn.qkv.bias[rows][d:] = attn.qkv.bias[rows][:d]
        x = torch.rand(2, 3, 32, 32)
        before = gm(x)
        to_gqa(gm, 1)
        assert (gm(x) - before).abs().max() < 1e-6
    assert all(m.qkv.out_features == (2 + 2) * m.head_dim for m in gm.modules() if isinstance(m, MPCAttention))


def test_grouped_attention_runs_under_mpc():
    gm = to_gqa(_rewritten(), 1)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        plain = gm(x)
    assert (secure_logits(gm, x) - plain).abs().max() < 0.05


def test_bad_groups_are_refused():
    with pytest.raises(ValueError, match="rewrite the model by a policy first"):
        to_gqa(create_model("vit_lite_2_2_32"), 1)
    with pytest.raises(ValueError, match="cannot group 2 heads"):
        to_gqa(_rewritten(), 3)


def test_fine_tuned_gqa_checkpoint_rebuilds(tiny_ckpt, tmp_path):
    out = tmp_path / "gqa"
    assert cli.main(["train", "--init", tiny_ckpt, "--policy", "exact", "--gqa", "1", "--epochs", "1",
                     "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["gqa"] == 1
    model, _ = load_model(out)
    assert all(m.kv_heads == 1 for m in model.modules() if isinstance(m, MPCAttention))
