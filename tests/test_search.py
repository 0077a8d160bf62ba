"""MPC-aware attention search: relaxed heads, cost term, budgets, the written policy."""

from __future__ import annotations

import json

import pytest
import torch

import protocols
import yaml

from secvit import cli
from secvit.models import create_model
from secvit.mpc_modules import MPCAttention
from secvit.rewrite import load_policy, rewrite
from secvit.search.mixed import head_cost
from secvit.search.search import binarise, relax


def test_alpha_one_is_relu_softmax_and_the_cost_term_pulls_alpha_down():
    torch.manual_seed(0)
    model = create_model("vit_lite_2_2_32").eval()
    relu = rewrite(model, load_policy("relu"))[0]
    searched = rewrite(model, load_policy("relu"))[0]
    mixed = relax(searched, tokens=65, lam=1.0)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (searched(x) - relu(x)).abs().max() < 1e-6
    sum(m.regularization() for m in mixed).backward()
    assert all((m.alpha.grad > 0).all() for m in mixed)  # descending lowers every alpha


def test_budgets_keep_the_top_alpha_heads():
    alphas = [[0.9, 0.1, 0.5, 0.2], [0.8, 0.3, 0.95, 0.0]]
    by_fraction = binarise(alphas, head_bytes=100, fraction=0.25)
    assert by_fraction == [["softmax.relu"] + ["softmax.scaling"] * 3,
                           ["softmax.scaling", "softmax.scaling", "softmax.relu", "softmax.scaling"]]
    by_bytes = binarise(alphas, head_bytes=100, max_bytes=350)  # three heads fit
    assert sum(row.count("softmax.relu") for row in by_bytes) == 3 and by_bytes[1][0] == "softmax.relu"
    by_rounds = binarise(alphas, head_bytes=100, max_rounds=40, layer_rounds=38)  # one layer fits
    assert by_rounds == [["softmax.scaling"] * 4,
                         ["softmax.relu", "softmax.relu", "softmax.relu", "softmax.relu"]]  # 0.95 opens layer 1
    with pytest.raises(ValueError, match="exactly one budget"):
        binarise(alphas, 100)
    with pytest.raises(ValueError, match="exactly one budget"):
        binarise(alphas, 100, fraction=0.5, max_rounds=38)
    assert head_cost(65) > 0


def test_search_command_writes_a_policy_that_rewrites(tiny_ckpt, tmp_path):
    out, report = tmp_path / "searched.yaml", tmp_path / "search.json"
    assert cli.main(["search", "--checkpoint", tiny_ckpt, "--fraction", "0.5", "--base-policy", "relu",
                     "--epochs", "1", "--out", str(out), "--json", str(report)]) == 0
    alphas = json.loads(report.read_text())["alphas"]
    assert min(map(min, alphas)) < 0.9  # the alphas' own learning rate moves them within one epoch
    policy = yaml.safe_load(out.read_text())
    assert [h.count("softmax.relu") for h in policy["attention"]["heads"].values()] == [1]
    gm, _ = rewrite(create_model("vit_lite_1_2_16"), load_policy(str(out)))
    heads = next(m for m in gm.modules() if isinstance(m, MPCAttention)).head_protocols
    assert sorted(heads) == ["softmax.relu", "softmax.scaling"]


def test_alphas_train_at_their_own_learning_rate():
    from secvit.train import _param_groups

    model = rewrite(create_model("vit_lite_1_2_16"), load_policy("relu"))[0]
    mixed = relax(model, tokens=17, lam=1.0, alpha_lr_scale=20.0)
    groups = _param_groups(model, weight_decay=0.05)
    (alpha_group,) = [g for g in groups if g["lr_scale"] == 20.0]
    assert alpha_group["weight_decay"] == 0.0 and {id(p) for p in alpha_group["params"]} == {id(m.alpha) for m in mixed}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_round_budget_counts_layers_by_the_registry():
    from secvit.search.mixed import layer_rounds

    model = rewrite(create_model("vit_lite_2_2_32"), load_policy("relu"))[0]
    attn = next(m for m in model.modules() if isinstance(m, MPCAttention))
    # the ReLU-softmax's counted rounds over scaling's, truncations included (the registry test measures them)
    shape = (1, 2, 65, 65)
    expected = protocols.get("softmax.relu").total_cost(shape).rounds - protocols.get("softmax.scaling").total_cost(shape).rounds
    assert layer_rounds(65, attn) == expected == 33
