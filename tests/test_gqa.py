"""Grouped-query attention by conversion: exact where the heads already agree, the same
under MPC, persisted in checkpoints; the key-driven modes' allocation (hand-computed), when
it moves, and which of them run under MPC."""

from __future__ import annotations

import json

import pytest
import torch

from secvit import cli
from secvit.checkpoint import load_model
from secvit.gqa import gqa_from_record, gqa_record, to_gqa
from secvit.models import create_model
from secvit.mpc_modules import MPCAttention
from secvit.ops import UnsupportedOpError
from secvit.query_grouping import allocate
from secvit.rewrite import load_policy, rewrite
from secvit.secure.plan import SecurePlan

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


@pytest.mark.parametrize("norms, heads, expected", [
    ([3.0, 1.0], 4, [0, 0, 0, 1]),           # quotas 3, 1
    ([1.0, 1.0], 4, [0, 0, 1, 1]),           # uniform: mean GQA's consecutive groups
    ([10.0, 0.1], 4, [0, 0, 0, 1]),          # quota 0.04 still gets one head
    ([1.0, 2.0, 3.0], 6, [0, 1, 1, 2, 2, 2]),
    ([0.2, 0.3, 0.5], 4, [0, 1, 2, 2]),      # quotas 0.8, 1.2, 2.0: largest remainder
])
def test_allocation_follows_the_key_norms(norms, heads, expected):
    assert allocate(torch.tensor(norms), heads) == expected


def _four_heads(mode: str, **options):
    torch.manual_seed(0)
    gm = rewrite(create_model("vit_lite_1_2_16", num_heads=4).eval(), load_policy("exact"))[0]
    return to_gqa(gm, 2, mode, **options), next(m for m in gm.modules() if isinstance(m, MPCAttention))


def _skew_group_1(attn: MPCAttention, factor: float) -> None:
    """Scale the keys of K/V group 1 (its rows of the qkv projection)."""
    h, d = attn.num_heads, attn.head_dim
    with torch.no_grad():
        attn.qkv.weight[h * d + d : h * d + 2 * d] *= factor
        attn.qkv.bias[h * d + d : h * d + 2 * d] *= factor


def test_kdgqa_allocates_per_input_and_is_refused_under_mpc():
    gm, attn = _four_heads("kdgqa")
    k = torch.zeros(1, 2, 3, attn.head_dim)
    k[:, 1] = 5.0
    k[:, 0] = 1.0
    assert attn.grouping.index(k, training=False).tolist() == [0, 1, 1, 1]
    assert attn.grouping.index(k.flip(1), training=False).tolist() == [0, 0, 0, 1]
    with torch.no_grad():
        gm(torch.rand(2, 3, 16, 16))  # runs in plaintext
    with pytest.raises(UnsupportedOpError, match="kdgqa allocates query heads from the key norms"):
        SecurePlan(gm)


def test_dgqa_reallocates_in_training_only_and_its_checkpoint_keeps_the_allocation(tmp_path):
    gm, attn = _four_heads("dgqa", interval=2)
    _skew_group_1(attn, 20.0)
    x = torch.rand(2, 3, 16, 16)
    gm.eval()
    with torch.no_grad():
        gm(x)
        gm(x)
    assert attn.grouping.assignment == [0, 0, 1, 1]  # evaluation does not move it
    gm.train()
    with torch.no_grad():
        gm(x)
        assert attn.grouping.assignment == [0, 0, 1, 1]  # not yet: every second step
        gm(x)
    assert attn.grouping.assignment == [0, 1, 1, 1]  # group 1's keys are the larger
    record = gqa_record(gm)
    assert record == {"groups": 2, "mode": "dgqa", "assignments": [[0, 1, 1, 1]]}
    plain_model = rewrite(create_model("vit_lite_1_2_16", num_heads=4).eval(), load_policy("exact"))[0]
    rebuilt = gqa_from_record(plain_model, json.loads(json.dumps(record)))
    rebuilt.load_state_dict(gm.state_dict())
    gm.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(gm(x), rebuilt(x))
        plain = gm(x[:1])
    assert (secure_logits(gm, x[:1]) - plain).abs().max() < 0.05  # a fixed, non-uniform allocation under MPC


def test_pgqa_perturbs_training_only():
    gm, _ = _four_heads("pgqa", sigma=0.5)
    mean, _ = _four_heads("mean")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(gm.eval()(x), mean.eval()(x))
        assert not torch.equal(gm.train()(x), mean.train()(x))


def test_a_gqa_mode_needs_groups(capsys):
    assert cli.main(["train", "--gqa-mode", "dgqa", "--out", "/tmp/never", "--epochs", "1"]) == 2
    assert "--gqa-mode dgqa goes with --gqa G" in capsys.readouterr().err
