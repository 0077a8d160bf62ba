"""Depth by structural reparameterization: exact merge, LayerNorm folding, the lambda schedule."""

from __future__ import annotations

import json

import pytest
import torch

from secvit import cli
from secvit.compress.reparam import BranchBlock, branch_model, depth_groups, merge_model
from secvit.models import create_model


def _teacher(depth: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    teacher = create_model("vit_lite_2_2_32", depth=depth).eval()
    with torch.no_grad():  # non-trivial LayerNorm affines, so that folding is exercised
        for name, p in teacher.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return teacher


def test_depth_groups_are_contiguous_and_balanced():
    assert depth_groups(7, 4) == [[0, 1], [2, 3], [4, 5], [6]]
    assert depth_groups(4, 4) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match=r"depth must be in \[1, 7\]"):
        depth_groups(7, 8)


def test_one_branch_is_the_block_itself():
    """K = 1: the folded LayerNorm affine changes nothing, at any lambda."""
    teacher = _teacher(2)
    model, groups = branch_model(teacher, 2)
    assert groups == [[0], [1]]
    x = torch.rand(3, 3, 32, 32)
    assert (model(x) - teacher(x)).abs().max() < 1e-5


def test_merged_model_equals_the_lambda_one_branch_model():
    teacher = _teacher(4)
    model, groups = branch_model(teacher, 2)
    assert groups == [[0, 1], [2, 3]] and all(b.branches == 2 for b in model.blocks)
    x = torch.rand(3, 3, 32, 32)
    at_zero = model(x)
    for block in model.blocks:
        block.schedule(1.0)
    merged = merge_model(model)
    assert len(merged.blocks) == 2
    assert (merged(x) - model(x)).abs().max() < 1e-5
    assert (model(x) - at_zero).abs().max() > 1e-2  # lambda changes the function: the test can fail


def test_lambda_zero_runs_the_branches_in_parallel():
    """At lambda = 0 a 2-branch block is x + A1(LN x) + A2(LN x), then the two MLPs alike."""
    teacher = _teacher(2)
    block = BranchBlock(list(teacher.blocks))
    x = torch.randn(2, 5, 64)
    b0, b1 = teacher.blocks
    h = x + b0.attn(b0.norm1(x)) + b1.attn(b1.norm1(x))
    expected = h + b0.mlp(b0.norm2(h)) + b1.mlp(b1.norm2(h))
    assert (block(x) - expected).abs().max() < 1e-5


def test_schedule_ramps_lambda():
    block = BranchBlock(list(_teacher(2).blocks), ramp=0.5)
    block.schedule(0.25)
    assert float(block.lam) == 0.5
    block.schedule(0.9)
    assert float(block.lam) == 1.0


def test_compress_command_writes_a_plain_shallower_checkpoint(tiny_ckpt, tmp_path, capsys):
    """The 1-block teacher kept at depth 1 (one branch): the written model loads as a
    plain ViT of that depth and reports its merge error."""
    out = tmp_path / "merged"
    assert cli.main(["compress", "--teacher", tiny_ckpt, "--depth", "1", "--epochs", "1", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model_args"]["depth"] == 1 and meta["branch_groups"] == [[0]]
    assert meta["merge_max_abs_error"] < 1e-4 and meta["train_seconds"] > 0 and meta["test_accuracy"] > 0.5
    assert "merge error" in capsys.readouterr().out
    assert cli.main(["compress", "--teacher", tiny_ckpt, "--depth", "2", "--out", str(tmp_path / "x")]) == 2
    assert cli.main(["compress", "--teacher", "checkpoints/vit_lite_7_4_32-digits-mpcformer", "--depth", "2",
                     "--out", str(tmp_path / "y")]) == 2
