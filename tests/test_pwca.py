"""DCAL's pair-wise cross-attention: its formula on hand-made cases, training with it, and a
trained model whose secure plan and cost are those of the same model trained without it."""

from __future__ import annotations

import pytest
import torch

from secvit.checkpoint import load_model
from secvit.models import create_model
from secvit.pwca import pwca_logits
from secvit.rewrite import load_policy, rewrite
from secvit.secure.plan import SecurePlan
from secvit.session import run_session
from secvit.train import TrainConfig, train


@pytest.mark.parametrize("rewritten", [False, True])
def test_an_image_paired_with_itself_sees_its_own_attention(rewritten):
    """Keys and values duplicated: every softmax weight halves and pairs with the same
    value, so the output is the plain forward's."""
    torch.manual_seed(0)
    model = create_model("vit_lite_1_2_16").eval()
    if rewritten:
        model = rewrite(model, load_policy("exact"))[0]
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        plain = model(x)
        assert (pwca_logits(model, x, torch.arange(3)) - plain).abs().max() < 1e-5
        crossed = pwca_logits(model, x, torch.tensor([1, 2, 0]))
        other = pwca_logits(model, x, torch.tensor([2, 0, 1]))
        assert (crossed - plain).abs().max() > 1e-3 and (crossed[0] - other[0]).abs().max() > 1e-3
        assert torch.equal(model(x), plain)  # the attentions' own forward is back


def test_pwca_trains_a_different_model_with_the_same_secure_plan_and_cost(tiny_ckpt, tmp_path):
    for pwca in (False, True):
        train(TrainConfig(init=tiny_ckpt, epochs=1, warmup_epochs=1, pwca=pwca), tmp_path / str(pwca))
    (plain, meta), (crossed, crossed_meta) = load_model(tmp_path / "False"), load_model(tmp_path / "True")
    assert crossed_meta.extra["train_config"]["pwca"] and not meta.extra["train_config"]["pwca"]
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), crossed.state_dict().values()))
    assert SecurePlan(plain).graph_module.code == SecurePlan(crossed).graph_module.code
    reports = [run_session(str(tmp_path / str(pwca)), ["digits-test:2"], batch_size=2) for pwca in (False, True)]
    costs = [{k: max(p[k] for p in r.parties.values()) for k in ("bytes", "rounds")} for r in reports]
    assert costs[0] == costs[1] and costs[0]["rounds"] > 0
