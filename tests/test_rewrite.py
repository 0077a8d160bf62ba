"""Graph rewriter and policies."""

from __future__ import annotations

import pytest
import torch

from secvit.models import create_model
from secvit.mpc_modules import MPCActivation, MPCAttention, MPCNorm
from secvit.rewrite import PolicyError, load_policy, rewrite, to_networkx
from secvit.rewrite.policy import POLICY_DIR, policy_from_dict

from .conftest import secure_logits

BUILT_IN = sorted(p.stem for p in POLICY_DIR.glob("*.yaml"))


def _model(name: str = "vit_lite_2_2_32") -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        model.cls_token.normal_(0, 1)
        model.pos_embed.normal_(0, 0.5)
    return model


def test_built_in_policies_exist():
    assert {"exact", "mpcformer", "mpcvit", "relu", "linear"} <= set(BUILT_IN)


def test_exact_policy_matches_the_original():
    model = create_model("vit_lite_7_4_32").eval()
    gm, report = rewrite(model, load_policy("exact"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (gm(x) - model(x)).abs().max() < 1e-5
    assert [p.changed for p in report.passes] == [True, True, True, False, False]


@pytest.mark.parametrize("policy", BUILT_IN)
def test_policy_replaces_every_module(policy: str):
    model = create_model("vit_lite_7_4_32")
    gm, report = rewrite(model, load_policy(policy))
    kinds = {type(m) for m in gm.modules()}
    assert {MPCAttention, MPCActivation, MPCNorm} <= kinds
    assert not any(type(m).__name__ in ("Attention", "GELU", "LayerNorm") for m in gm.modules())
    assert report.after and to_networkx(gm).number_of_nodes() == len(gm.graph.nodes)


def test_a_rewritten_model_is_refused_with_what_to_do():
    """Found as a user: `secvit profile --checkpoint <mpcformer checkpoint> --policy mpcformer` ended in
    a StopIteration traceback."""
    gm, _ = rewrite(_model(), load_policy("mpcformer"))
    with pytest.raises(PolicyError, match="already rewritten .* plain checkpoint"):
        rewrite(gm, load_policy("mpcformer"))


def test_heterogeneous_heads_and_selection():
    policy = policy_from_dict({
        "attention": {"default": "softmax.scaling", "heads": {0: ["softmax.relu", "softmax.scaling"]},
                      "paths": {"blocks.1.*": "softmax.2quad"}},
        "activation": {"default": "gelu.quad", "layers": {1: "gelu.relu"}},
    })
    gm, _ = rewrite(_model(), policy)
    assert gm.get_submodule("blocks.0.attn").head_protocols == ["softmax.relu", "softmax.scaling"]
    assert gm.get_submodule("blocks.1.attn").head_protocols == ["softmax.2quad"] * 2
    assert gm.get_submodule("blocks.0.mlp.act").protocol == "gelu.quad"
    assert gm.get_submodule("blocks.1.mlp.act").protocol == "gelu.relu"


def test_fold_affine_is_exact():
    raw = {"norm": {"default": "norm.layer", "fold_affine": True}}
    model = _model()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    folded, report = rewrite(model, policy_from_dict(raw))
    plain, _ = rewrite(model, policy_from_dict({"norm": {"default": "norm.layer"}}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (folded(x) - plain(x)).abs().max() < 1e-5
    folded_norms = [m for m, _ in report.passes[-1].changes]
    assert "blocks.0.norm1" in folded_norms and "blocks.0.norm2" in folded_norms
    assert folded.get_submodule("blocks.0.norm1").weight is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"attention": {"default": "softmax.cubic"}}, r"attention.default: 'softmax.cubic' is not a softmax protocol; allowed:"),
        ({"activation": {"default": "softmax.relu"}}, r"activation.default: 'softmax.relu' is not a activation protocol"),
        ({"attention": {"defualt": "softmax.relu"}}, r"attention: unknown key\(s\) \['defualt'\]; allowed:"),
        ({"atention": {}}, r"unknown key\(s\) \['atention'\]"),
        ({"attention": {"layers": {9: "softmax.relu"}}}, r"attention.layers: layer 9 out of range; the model has layers 0..1"),
        ({"attention": {"heads": {0: ["softmax.relu"]}}}, r"attention.heads.0: 1 protocols for 2 heads"),
    ],
)
def test_policy_errors_name_file_key_and_allowed(tmp_path, raw, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match=message) as info:
        rewrite(_model(), load_policy(path))
    assert str(path) in str(info.value)


def test_policy_survives_json():
    import json

    policy = load_policy("mpcvit")
    again = policy_from_dict(json.loads(json.dumps(policy.to_dict())))
    assert again.attention.heads == policy.attention.heads and again.to_dict() == policy.to_dict()


def test_unknown_policy_name():
    with pytest.raises(PolicyError, match="known: exact"):
        load_policy("nope")


@pytest.mark.parametrize("policy", ["mpcformer", "mpcvit-2h", "relu", "linear-folded", "fast", "lean"])
def test_secure_forward_of_rewritten_models(policy: str):
    policies = {
        "mpcvit-2h": {"attention": {"default": "softmax.scaling", "heads": {0: ["softmax.relu", "softmax.scaling"]}}},
        "linear-folded": {**load_policy("linear").to_dict(), "norm": {"default": "norm.affine", "fold_affine": True}},
    }
    chosen = policy_from_dict(policies[policy]) if policy in policies else load_policy(policy)
    gm, _ = rewrite(_model(), chosen)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = gm(x)
    assert (secure_logits(gm, x) - ref).abs().max() < 0.05


def _trained_batch_norm_model() -> torch.nn.Module:
    """A model with ``norm.batch`` norms whose running statistics a few training-mode
    batches have moved away from (0, 1), and non-trivial gamma/beta."""
    model, _ = rewrite(_model(), policy_from_dict({"norm": {"default": "norm.batch"}}))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MPCNorm):
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def test_batch_norm_trains_with_batch_statistics_and_keeps_them_through_fold_affine():
    model = _trained_batch_norm_model()
    norm = model.get_submodule("blocks.0.norm1")
    assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))
    folded, _ = rewrite(_model(), policy_from_dict({"norm": {"default": "norm.batch", "fold_affine": True}}))
    # statistics still to be learned are not folded by the rewriter (the secure plan folds them)
    assert folded.get_submodule("blocks.0.norm1").running_mean is not None


def test_secure_plan_folds_trained_batch_norms_into_the_next_linear_layers():
    from protocols.fixed_point import FixedPoint
    from secvit.secure.emulation import emulate

    model = _trained_batch_norm_model()
    x = torch.randn(2, 3, 32, 32)
    costs = {}
    for name, m in (("batch", model), ("layer", rewrite(_model(), load_policy("exact"))[0])):
        fp = FixedPoint(16)
        emulated = emulate(m, x, fp=fp)
        with torch.no_grad():
            assert (emulated - m(x)).abs().max() < 2e-3
        costs[name] = fp.total_cost().rounds
    # the norms before qkv and fc1 leave the graph; only the final one (read by the head) costs 2 rounds
    from protocols import registry

    layer_norm = registry.get("norm.layer").total_cost((1, 4, 8)).rounds
    assert costs["layer"] - costs["batch"] == 2 * 2 * layer_norm + layer_norm - 2
    assert model.get_submodule("blocks.0.norm1").running_mean is not None  # the caller's model is untouched
    assert (secure_logits(model, x) - model(x)).abs().max() < 0.05


def test_recalibrated_batch_statistics_are_the_average_over_batches():
    from secvit.train import recalibrate_batch_statistics

    model = _trained_batch_norm_model()
    norm = model.get_submodule("blocks.0.norm1")
    seen = []
    handle = norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    assert recalibrate_batch_statistics(model, torch.randn(24, 3, 32, 32), batch_size=8)
    handle.remove()
    assert len(seen) == 3 and not model.training and norm.momentum == 0.1
    assert torch.allclose(norm.running_mean, torch.stack([s.mean(0) for s in seen]).mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, torch.stack([s.var(0) for s in seen]).mean(0), atol=1e-4)
    assert not recalibrate_batch_statistics(_model(), torch.randn(8, 3, 32, 32), batch_size=8)
