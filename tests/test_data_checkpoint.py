"""Data sources and checkpoints."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from secvit.checkpoint import (MODEL_ARG_RULES, VIT_LITE_ARGS, CheckpointError, Meta, allowed_model_args,
                               build_model, load_meta, load_model, save_checkpoint)
from secvit.data import Normalization, load_dataset
from secvit.models import create_model
from secvit.models.vit_lite import vit_lite


def test_digits_split_is_deterministic():
    a, b = load_dataset("digits", 16), load_dataset("digits", 16)
    assert a.x_train.shape == (1437, 3, 16, 16) and a.x_test.shape == (360, 3, 16, 16)
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1.0


def test_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8), y=rng.integers(0, 4, 50))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}", 16)
    assert data.x_train.shape == (40, 3, 16, 16) and len(data.x_test) == 10


def test_cifar10_source(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    data = load_dataset(f"cifar10:{tmp_path}", 32)
    assert data.x_train.shape == (20, 3, 32, 32) and data.num_classes == 10


def test_unknown_data_source():
    with pytest.raises(ValueError, match="expected 'digits', 'fashion-mnist"):
        load_dataset("imagenet", 32)


def _meta() -> Meta:
    return Meta("vit_lite_1_2_16", {"num_classes": 10}, 16, 3, 10, Normalization((0.3,) * 3, (0.3,) * 3))


def test_checkpoint_round_trip(tmp_path):
    model = create_model("vit_lite_1_2_16", num_classes=10)
    save_checkpoint(model, _meta(), tmp_path / "c")
    loaded, meta = load_model(tmp_path / "c")
    assert meta.model == "vit_lite_1_2_16"
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.allclose(a.half().float(), b), k


def test_batch_statistics_beyond_float16_survive_a_round_trip(tmp_path):
    """Parameters are stored in float16, buffers in float32: a BatchNorm running variance
    past float16's 65,504 (a residual stream of a trained BatchNorm ViT-Lite reached 7e4)
    comes back as it was, not as inf."""
    from secvit.mpc_modules import MPCNorm
    from secvit.rewrite import load_policy, rewrite

    policy = load_policy("fast")
    model = rewrite(create_model("vit_lite_1_2_16", num_classes=10), policy)[0].eval()
    norm = next(m for m in model.modules() if isinstance(m, MPCNorm))
    norm.running_var.fill_(7e4)
    norm.running_mean.fill_(333.3)
    meta = _meta()
    meta.extra["policy"] = policy.to_dict()
    save_checkpoint(model, meta, tmp_path / "c")
    loaded, _ = load_model(tmp_path / "c")
    loaded_norm = next(m for m in loaded.modules() if isinstance(m, MPCNorm))
    assert torch.equal(loaded_norm.running_var, norm.running_var)
    assert torch.equal(loaded_norm.running_mean, norm.running_mean)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.isfinite(loaded(x)).all()
        assert (loaded(x) - model(x)).abs().max() < 0.05  # the parameters' float16 rounding only


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_meta(tmp_path / "nope")


def test_corrupt_weights(tmp_path):
    save_checkpoint(create_model("vit_lite_1_2_16"), _meta(), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_model(tmp_path / "c")


def test_unknown_model_in_meta(tmp_path):
    save_checkpoint(create_model("vit_lite_1_2_16"), _meta(), tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    (tmp_path / "c" / "meta.json").write_text(json.dumps({**meta, "model": "vit_nope"}))
    with pytest.raises(CheckpointError, match="unknown model 'vit_nope'"):
        load_meta(tmp_path / "c")


def _write_meta(tmp_path: Path, **changes: Any) -> Path:
    """A checkpoint directory holding only ``meta.json``: :func:`_meta` with ``changes``."""
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text(json.dumps({**_meta().to_dict(), **changes}))
    return ckpt


def test_unknown_model_arg_is_refused(tmp_path):
    ckpt = _write_meta(tmp_path, model_args={"num_classes": 10, "act_layer": "torch.nn.Identity"})
    with pytest.raises(CheckpointError, match=r"c/meta.json: model_args key 'act_layer' is not allowed for "
                                              r"vit_lite_1_2_16 \(allowed: class_attention, depth, embed_dim, glca, "):
        load_meta(ckpt)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("depth", "7", r"an int in \[1, 64\]"),
    ("num_classes", True, r"an int in \[1, 32768\]"),
    ("embed_dim", 64.0, r"an int in \[1, 4096\]"),
    ("mlp_ratio", False, r"a number in \[0.0, 16.0\]"),
    ("depth", None, r"an int in \[1, 64\], got None"),
])
def test_model_arg_of_the_wrong_type_is_refused(tmp_path, key, value, expected):
    ckpt = _write_meta(tmp_path, model_args={"num_classes": 10, key: value})
    with pytest.raises(CheckpointError, match=rf"meta.json: model_args\['{key}'\] must be {expected}"):
        load_meta(ckpt)


@pytest.mark.parametrize(("key", "value"), [("depth", 65), ("num_heads", 0), ("img_size", 1 << 20),
                                            ("num_classes", 10**9), ("mlp_ratio", 1e9), ("mlp_ratio", float("nan"))])
def test_model_arg_out_of_range_is_refused(tmp_path, key, value):
    ckpt = _write_meta(tmp_path, model_args={"num_classes": 10, key: value})
    with pytest.raises(CheckpointError, match=rf"model_args\['{key}'\] must be .* in \["):
        load_meta(ckpt)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"img_size": 1 << 20}, r"img_size must be an int in \[1, 4096\]"),
    ({"num_classes": "10"}, r"num_classes must be an int"),
    ({"model_args": [["num_classes", 10]]}, "model_args must be an object, got list"),
    ({"model": ["vit_lite_1_2_16"]}, r"unknown model \['vit_lite_1_2_16'\]"),
])
def test_malformed_meta_fields_are_refused(tmp_path, changes, expected):
    with pytest.raises(CheckpointError, match=expected):
        load_meta(_write_meta(tmp_path, **changes))


def test_what_the_project_writes_is_allowed(tmp_path):
    """Training writes ``num_classes``; compression ``depth``, ``mlp_ratio`` (an int from
    YAML), ``num_heads`` and ``head_dim``."""
    args = {"num_classes": 10, "depth": 1, "mlp_ratio": 1, "num_heads": 1, "head_dim": 16}
    meta = load_meta(_write_meta(tmp_path, model_args=args))
    assert meta.model_args == args and build_model(meta).blocks[0].attn.num_heads == 1


def test_null_only_where_the_default_is_none(tmp_path):
    assert load_meta(_write_meta(tmp_path, model_args={"head_dim": None})).model_args == {"head_dim": None}


@pytest.mark.parametrize("ckpt", sorted(Path("checkpoints").glob("*/meta.json")), ids=lambda p: p.parent.name)
def test_shipped_checkpoints_load(ckpt):
    meta = load_meta(ckpt.parent)
    assert meta.model_args and set(meta.model_args) <= allowed_model_args(meta.model)


def test_checkpoints_are_shipped():
    assert len(list(Path("checkpoints").glob("*/meta.json"))) >= 3


def test_timm_model_with_allowed_args_loads(tmp_path):
    args = {"img_size": 32, "patch_size": 8, "num_classes": 10, "qkv_bias": True, "global_pool": "token",
            "drop_rate": 0.0}
    meta = load_meta(_write_meta(tmp_path, model="deit_tiny_patch16_224", model_args=args, img_size=32))
    model = build_model(meta)
    assert meta.model_args == args and model.patch_embed.img_size == (32, 32) and model.head.out_features == 10


def test_timm_model_refuses_built_in_only_and_unsafe_args(tmp_path):
    ckpt = _write_meta(tmp_path, model="deit_tiny_patch16_224", model_args={"head_dim": 16})
    with pytest.raises(CheckpointError, match="model_args key 'head_dim' is not allowed for deit_tiny_patch16_224"):
        load_meta(ckpt)
    (ckpt / "meta.json").write_text(json.dumps({**_meta().to_dict(), "model": "deit_tiny_patch16_224",
                                                "model_args": {"global_pool": "fancy"}}))
    with pytest.raises(CheckpointError, match=r"model_args\['global_pool'\] must be one of '', 'token'"):
        load_meta(ckpt)


def test_vit_lite_args_are_its_parameters():
    """Built-in entries forward ``**kwargs`` to ``vit_lite``: the allowlist is its parameters."""
    params = inspect.signature(vit_lite).parameters.values()
    assert VIT_LITE_ARGS == {p.name for p in params if p.kind is not p.VAR_KEYWORD}
    assert VIT_LITE_ARGS <= MODEL_ARG_RULES.keys()
    assert allowed_model_args("vit_lite_7_4_32") == VIT_LITE_ARGS


def test_one_way_to_rebuild_a_model_with_a_policy(tiny_ckpt):
    """Owner (weights) and client (meta-device skeleton) get the same rewritten structure
    from the checkpoint and the policy, and the owner's equals rewriting the loaded model."""
    from secvit.checkpoint import build_model, load_meta, load_model
    from secvit.rewrite import load_policy, rewrite

    owner, meta = load_model(tiny_ckpt, "mpcformer")
    with torch.device("meta"):
        client = build_model(load_meta(tiny_ckpt), "mpcformer")
    assert [type(m).__name__ for m in owner.modules()] == [type(m).__name__ for m in client.modules()]
    assert all(p.is_meta for p in client.parameters())
    x = torch.randn(2, meta.in_chans, meta.img_size, meta.img_size)
    by_hand = rewrite(load_model(tiny_ckpt)[0], load_policy("mpcformer"))[0]
    with torch.no_grad():
        assert torch.equal(owner(x), by_hand(x))
