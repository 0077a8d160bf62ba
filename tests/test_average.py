"""``secvit average``: the mean of the ingredients' weights, BatchNorm statistics
re-estimated for the averaged weights, and refusals of checkpoints that differ."""

from __future__ import annotations

import json

import pytest
import torch

from secvit.average import average_checkpoints
from secvit.checkpoint import Meta, load_model, save_checkpoint
from secvit.cli import main
from secvit.data import Normalization, load_dataset
from secvit.errors import UsageError
from secvit.models import create_model
from secvit.mpc_modules import MPCNorm
from secvit.rewrite import load_policy, rewrite
from secvit.train import recalibrate_batch_statistics


def _checkpoint(path, seed: int, policy: str | None = None, **model_args) -> str:
    torch.manual_seed(seed)
    model = create_model("vit_lite_1_2_16", num_classes=10, **model_args)
    meta = Meta("vit_lite_1_2_16", {"num_classes": 10, **model_args}, 16, 3, 10,
                Normalization((0.3,) * 3, (0.3,) * 3), "digits", {"test_accuracy": 0.1 * seed})
    if policy is not None:
        meta.extra["policy"] = load_policy(policy).to_dict()
        model = rewrite(model, load_policy(policy))[0]
        for m in model.modules():
            if isinstance(m, MPCNorm) and m.running_var is not None:
                m.running_var.fill_(1e4)  # statistics no average of these weights would have
    save_checkpoint(model, meta, path)
    return str(path)


def test_the_average_is_the_mean_of_the_weights(tmp_path):
    a, b = _checkpoint(tmp_path / "a", 1), _checkpoint(tmp_path / "b", 2)
    assert main(["average", a, b, "--out", str(tmp_path / "avg")]) == 0
    wa, wb, avg = (load_model(p)[0].state_dict() for p in (a, b, tmp_path / "avg"))
    for k, v in avg.items():
        assert torch.equal(v, ((wa[k] + wb[k]) / 2).half().float()), k  # stored in float16, like every checkpoint
    meta = json.loads((tmp_path / "avg" / "meta.json").read_text())
    assert meta["averaged_from"] == [{"checkpoint": a, "test_accuracy": 0.1}, {"checkpoint": b, "test_accuracy": 0.2}]
    assert 0 <= meta["test_accuracy"] <= 1 and meta["test_images"] == 360 and "precision_bits" not in meta


def test_batch_statistics_are_those_of_the_averaged_weights(tmp_path):
    a, b = _checkpoint(tmp_path / "a", 1, "fast"), _checkpoint(tmp_path / "b", 2, "fast")
    average_checkpoints([a, b], tmp_path / "avg")
    model, meta = load_model(tmp_path / "avg")
    stats = [m.running_var.clone() for m in model.modules() if isinstance(m, MPCNorm) and m.running_var is not None]
    assert stats and all(not torch.equal(s, torch.full_like(s, 1e4)) for s in stats)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    recalibrate_batch_statistics(model, meta.normalization.apply(data.x_train), 128)
    again = [m.running_var for m in model.modules() if isinstance(m, MPCNorm) and m.running_var is not None]
    for s, t in zip(stats, again, strict=True):
        assert torch.allclose(s, t, rtol=1e-2)  # measured before the float16 rounding of the parameters


def test_checkpoints_that_differ_are_refused(tmp_path):
    a = _checkpoint(tmp_path / "a", 1)
    with pytest.raises(UsageError, match="two or more"):
        average_checkpoints([a], tmp_path / "out")
    with pytest.raises(UsageError, match=r"policy .*'fast'.*, but .* has None"):
        average_checkpoints([a, _checkpoint(tmp_path / "b", 2, "fast")], tmp_path / "out")
    with pytest.raises(UsageError, match="model_args"):
        average_checkpoints([a, _checkpoint(tmp_path / "c", 2, mlp_ratio=1.0)], tmp_path / "out")
    assert not (tmp_path / "out").exists()
