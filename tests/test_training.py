"""Training is reproducible, and the shipped checkpoint is what its meta.json says."""

from __future__ import annotations

import json

import pytest
import torch

from secvit.checkpoint import load_model
from secvit.checkpoint import DEFAULT_CHECKPOINT
from secvit.data import load_dataset
from secvit.errors import UsageError
from secvit.train import TrainConfig, evaluate, train


def test_same_seed_same_weights(tmp_path):
    cfg = TrainConfig(model="vit_lite_1_2_16", epochs=1, warmup_epochs=1)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    a, _ = load_model(tmp_path / "a")
    b, _ = load_model(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_tiny_model_learns(tiny_ckpt):
    meta = json.loads((__import__("pathlib").Path(tiny_ckpt) / "meta.json").read_text())
    assert meta["test_accuracy"] > 0.5 and meta["seed"] == 0


@pytest.mark.parametrize("suffix, policy", [("", None), ("-mpcformer", "mpcformer"), ("-mpcvit", "mpcvit")])
def test_shipped_checkpoint_accuracy(suffix, policy):
    model, meta = load_model(DEFAULT_CHECKPOINT + suffix)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    accuracy = evaluate(model, meta.normalization.apply(data.x_test), data.y_test)
    assert accuracy >= 0.97
    assert abs(accuracy - meta.extra["test_accuracy"]) < 1e-9
    assert meta.model == "vit_lite_7_4_32"
    assert (meta.extra.get("policy") or {}).get("name") == policy


def test_clip_grad_bounds_every_steps_gradient_norm(monkeypatch):
    """``--clip-grad`` caps the global gradient norm the optimiser sees; unclipped steps
    exceed the cap (so the check can fail)."""
    from secvit.data import Dataset, Normalization
    from secvit.models import create_model
    from secvit.train import fit

    full = load_dataset("digits", 16, 3)
    data = Dataset("digits", full.x_train[:128], full.y_train[:128], full.x_test[:32], full.y_test[:32], 10)
    norms: list[float] = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    seen = {}
    for clip in (None, 0.05):
        norms.clear()
        torch.manual_seed(0)
        cfg = TrainConfig(model="vit_lite_1_2_16", epochs=1, warmup_epochs=1, clip_grad=clip)
        fit(create_model("vit_lite_1_2_16", num_classes=10, img_size=16), data, Normalization((0.5,) * 3, (0.5,) * 3),
            cfg)
        seen[clip] = max(norms)
    assert seen[None] > 0.05 >= seen[0.05] - 1e-6


def test_flip_mirrors_about_half_the_batch_and_replays_from_the_seed():
    from secvit.augment import random_flip
    from secvit.distill.distillers import Distiller

    x = torch.rand(400, 1, 5, 5)
    out = random_flip(x, torch.Generator().manual_seed(1))
    mirrored = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((mirrored ^ kept).all()) and 150 < int(mirrored.sum()) < 250
    assert torch.equal(out, random_flip(x, torch.Generator().manual_seed(1)))
    idx = torch.arange(400)
    plain = Distiller().augment(x, idx, 0, 0, False, torch.Generator().manual_seed(1))
    assert torch.equal(plain, x)
    assert torch.equal(Distiller().augment(x, idx, 0, 0, True, torch.Generator().manual_seed(1)), out)


def test_flip_is_refused_with_replayed_logits():
    with pytest.raises(UsageError, match="--flip does not go with --distill sparse"):
        TrainConfig(distill="sparse", cached_logits="cache.pt", flip=True)
