"""Data sources and checkpoints."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from secvit.checkpoint import CheckpointError, Meta, load_meta, load_model, save_checkpoint
from secvit.data import Normalization, load_dataset
from secvit.models import create_model


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
    with pytest.raises(ValueError, match="expected 'digits', 'npz:PATH' or 'cifar10:DIR'"):
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
