"""Distillation losses against their formulas, and distilled training end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from secvit.distill.losses import kd_loss, nkd_loss


def test_kd_is_zero_for_the_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    t = torch.randn(5, 10)
    assert kd_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(5, 10, requires_grad=True)
    loss = kd_loss(s, t, temperature=2.0)
    p, q = F.softmax(t / 2, -1), F.softmax(s / 2, -1)
    assert loss.item() == pytest.approx(((p * (p / q).log()).sum(-1).mean() * 4).item(), rel=1e-5)
    loss.backward()
    assert s.grad.abs().sum() > 0


def test_nkd_matches_its_formula_on_one_sample():
    s, t, y = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.2, 3.0, -1.0]]), torch.tensor([1])
    t_t = math.exp(3.0) / (math.exp(0.2) + math.exp(3.0) + math.exp(-1.0))
    s_t = math.exp(2.0) / (math.exp(1.0) + math.exp(2.0) + math.exp(0.5))
    t_hat = [math.exp(0.2) / (math.exp(0.2) + math.exp(-1.0)), math.exp(-1.0) / (math.exp(0.2) + math.exp(-1.0))]
    s_hat = [math.exp(1.0) / (math.exp(1.0) + math.exp(0.5)), math.exp(0.5) / (math.exp(1.0) + math.exp(0.5))]
    expected = -t_t * math.log(s_t) - 1.5 * sum(a * math.log(b) for a, b in zip(t_hat, s_hat))
    assert nkd_loss(s, t, y).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", ["kd", "nkd"])
def test_distilled_training_records_its_teacher(tiny_ckpt, tmp_path, method):
    from secvit.train import TrainConfig, train

    cfg = TrainConfig(model="vit_lite_1_2_16", epochs=2, warmup_epochs=1, lr=3e-3, teacher=tiny_ckpt, distill=method)
    meta = train(cfg, tmp_path / method)
    assert meta["train_config"]["distill"] == method and meta["train_config"]["teacher"] == tiny_ckpt
    assert 0.0 <= meta["test_accuracy"] <= 1.0


def test_distillation_options_are_checked():
    from secvit import cli

    with pytest.raises(ValueError, match="go together"):
        from secvit.train import TrainConfig

        TrainConfig(teacher="checkpoints/vit_lite_7_4_32-digits")
    assert cli.main(["train", "--teacher", "checkpoints/vit_lite_7_4_32-digits", "--out", "/tmp/x"]) == 2
