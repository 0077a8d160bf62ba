"""Weight inheritance: exact at full size, layer picks, importance-ranked MLP channels and heads."""

from __future__ import annotations

import json

import pytest
import torch

from secvit import cli
from secvit.compress.inherit import inherit
from secvit.models import create_model


def _pair(teacher_args: dict, student_args: dict):
    torch.manual_seed(0)
    teacher = create_model("vit_lite_2_2_32", **teacher_args).eval()
    return teacher, create_model("vit_lite_2_2_32", **student_args).eval()


def test_full_size_inheritance_is_the_teacher():
    teacher, student = _pair({}, {})
    picked = inherit(teacher, student)
    assert picked.layers == [0, 1]
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(teacher(x), student(x))


def test_depth_keeps_every_s_th_block():
    teacher, student = _pair({"depth": 4}, {"depth": 2})
    assert inherit(teacher, student).layers == [0, 2]
    assert torch.equal(student.blocks[1].attn.qkv.weight, teacher.blocks[2].attn.qkv.weight)


def test_mlp_keeps_the_important_channels():
    """Channels with no weight in or out carry nothing: pruning them changes no output."""
    teacher, student = _pair({}, {"mlp_ratio": 1.0})
    with torch.no_grad():
        for block in teacher.blocks:
            dead = torch.arange(1, block.mlp.fc1.out_features, 2)  # every odd channel
            block.mlp.fc1.weight[dead] = 0
            block.mlp.fc1.bias[dead] = 0
            block.mlp.fc2.weight[:, dead] = 0
    picked = inherit(teacher, student)
    assert picked.mlp_channels[0] == list(range(0, 128, 2))
    x = torch.rand(2, 3, 32, 32)
    assert (teacher(x) - student(x)).abs().max() < 1e-5


def test_heads_keep_the_important_ones_at_the_teacher_width():
    """A head whose output projection is zero contributes nothing: dropping it changes no output."""
    teacher, student = _pair({"depth": 1}, {"depth": 1, "num_heads": 1, "head_dim": 32})
    with torch.no_grad():
        teacher.blocks[0].attn.proj.weight[:, :32] = 0  # head 0 is dead
    picked = inherit(teacher, student)
    assert picked.heads == [[1]] and student.blocks[0].attn.qkv.out_features == 96
    x = torch.rand(2, 3, 32, 32)
    assert (teacher(x) - student(x)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="head_dim=32"):
        inherit(teacher, create_model("vit_lite_2_2_32", depth=1, num_heads=1))


def test_inherit_command_writes_a_loadable_student(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "student"
    assert cli.main(["inherit", "--teacher", tiny_ckpt, "--mlp-ratio", "1", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model_args"]["mlp_ratio"] == 1.0 and meta["inherited_layers"] == [0]
    assert cli.main(["inherit", "--teacher", tiny_ckpt, "--heads", "1", "--out", str(tmp_path / "h")]) == 0
    from secvit.checkpoint import load_model

    assert load_model(tmp_path / "h")[0].blocks[0].attn.num_heads == 1
    assert "test accuracy" in capsys.readouterr().out
    assert cli.main(["inherit", "--teacher", tiny_ckpt, "--depth", "3", "--out", str(tmp_path / "x")]) == 2


def test_a_rewritten_teacher_is_refused(tmp_path):
    with pytest.raises(ValueError, match="inherit from the plain teacher"):
        from secvit.compress.student import inherit_checkpoint

        inherit_checkpoint("checkpoints/vit_lite_7_4_32-digits-mpcformer", tmp_path / "s", depth=2)


def test_a_student_with_fewer_heads_runs_under_mpc():
    """Heads narrower than the embedding (1 head of 16 on width 32) through rewrite and MPC."""
    from secvit.rewrite import load_policy, rewrite
    from tests.conftest import secure_logits

    torch.manual_seed(0)
    model = rewrite(create_model("vit_lite_1_2_16", num_heads=1, head_dim=16).eval(), load_policy("mpcformer"))[0]
    x = torch.rand(2, 3, 16, 16)
    assert (secure_logits(model, x) - model(x)).abs().max() < 0.05
