"""Exemplar-free class-incremental learning (secvit.continual): the gates, the update rule and
the sparsity loss on hand-computed values, the fold of the accumulated gates, the drift
projector and the prototype head against their formulas, and a small end-to-end run of each
method whose gated checkpoint runs under MPC."""

from __future__ import annotations

import json

import pytest
import torch

from secvit.checkpoint import load_model
from secvit.continual.distillation import FeatureDistillation
from secvit.continual.drift import Prototypes, features, fit_projector
from secvit.continual.gates import S_MAX, SPARSITY, GatedLinear, TaskGating
from secvit.continual.incremental import split_classes, train_continual
from secvit.models.class_attention import ClassAttentionViT
from secvit.errors import UsageError
from secvit.models import create_model
from secvit.secure.plan import SecurePlan
from secvit.train import TrainConfig, train

from .conftest import as_tensor, run_2pc


def _gated_model(tasks: int = 3) -> ClassAttentionViT:
    torch.manual_seed(0)
    model = create_model("vit_lite_2_2_32", class_attention=True)
    model.task_gating = TaskGating(model.class_block, tasks)
    return model


def test_split_classes_into_consecutive_tasks():
    assert split_classes(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert split_classes(10, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    for bad in (1, 11):
        with pytest.raises(UsageError, match="--tasks"):
            split_classes(10, bad)


def test_gate_and_its_annealing():
    layer = GatedLinear(torch.nn.Linear(3, 2), tasks=2)
    with torch.no_grad():
        layer.embeddings[1].copy_(torch.tensor([0.01, -0.02]))
    layer.task = 1
    layer.scale = 100.0
    assert torch.allclose(layer.gate(), torch.sigmoid(torch.tensor([1.0, -2.0])))
    layer.eval()  # evaluation gates at s = S_MAX
    assert torch.allclose(layer.gate(), torch.sigmoid(torch.tensor([0.01, -0.02]) * S_MAX))
    gating = _gated_model().task_gating
    gating.schedule(0.0)
    assert gating.layers[0].scale == pytest.approx(1 / S_MAX)
    gating.schedule(1.0)
    assert gating.layers[0].scale == pytest.approx(S_MAX)


def test_units_of_earlier_tasks_update_in_proportion_to_one_minus_their_gate():
    linear = torch.nn.Linear(2, 3)
    layer = GatedLinear(linear, tasks=2)
    with torch.no_grad():
        layer.accumulated.copy_(torch.tensor([1.0, 0.25, 0.0]))
        layer.keep.copy_(1 - layer.accumulated)
        layer.weight.fill_(1.0)  # the task's update, ΔW = 1 everywhere
        layer.bias.fill_(2.0)
    weight, bias = layer.effective()
    assert torch.allclose(weight - linear.weight, torch.tensor([[0.0, 0.0], [0.75, 0.75], [1.0, 1.0]]))
    assert torch.allclose(bias - linear.bias, torch.tensor([0.0, 1.5, 2.0]))


def test_sparsity_loss_counts_only_the_free_units_a_task_opens():
    model = _gated_model()
    gating = model.task_gating
    gating.begin(0)
    with torch.no_grad():
        for layer in gating.layers:
            layer.embeddings[0].zero_()  # every gate 1/2
    assert float(gating.regularization().detach()) == pytest.approx(SPARSITY * 0.5)
    gating.schedule(1.0)
    with torch.no_grad():
        for layer in gating.layers:  # task 0 takes the first half of every layer's units
            n = layer.accumulated.numel()
            layer.embeddings[0].copy_(torch.cat([torch.ones(n // 2), -torch.ones(n - n // 2)]))
    gating.end()
    assert gating.units_used() == pytest.approx(0.5, abs=0.01)
    gating.begin(1)
    with torch.no_grad():
        for layer in gating.layers:  # task 1 reuses task 0's units only: no cost
            layer.embeddings[1].copy_(layer.embeddings[0] * 1.0)
    gating.schedule(1.0)
    assert float(gating.regularization().detach()) < 1e-6


def test_accumulated_gates_fold_into_a_plain_block():
    model = _gated_model(tasks=2).eval()
    gating = model.task_gating
    for t in range(2):
        gating.begin(t)
        with torch.no_grad():
            for layer in gating.layers:
                layer.embeddings[t].normal_(0, 0.05)
                layer.weight.normal_(0, 0.1)
        gating.end()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        gated = model(x)
        assert all(float(layer.accumulated.min()) >= 0 for layer in gating.layers)
        gating.fold(model.class_block)
        del model.task_gating
        assert type(model.class_block.attn.q) is torch.nn.Linear
        assert (model(x) - gated).abs().max() < 1e-5
    plain = create_model("vit_lite_2_2_32", class_attention=True)
    assert set(plain.state_dict()) == set(model.state_dict())  # the checkpoint's model_args rebuild it


def test_projector_recovers_an_affine_drift_and_carries_prototypes():
    torch.manual_seed(0)
    old = torch.randn(200, 6)
    a, c = torch.randn(6, 6), torch.randn(6)
    weight, bias = fit_projector(old, old @ a + c, ridge=0.0)
    assert torch.allclose(weight, a, atol=1e-4) and torch.allclose(bias, c, atol=1e-4)
    prototypes = Prototypes()
    labels = torch.arange(200) % 3
    prototypes.add(old, labels)
    prototypes.carry((a, c))
    expected = torch.stack([old[labels == k].mean(0) for k in range(3)]) @ a + c
    assert torch.allclose(prototypes.vectors, expected, atol=1e-5)
    with pytest.raises(ValueError, match="200 old features against 10"):
        fit_projector(old, old[:10])


def test_prototype_head_is_the_nearest_prototype_rule():
    torch.manual_seed(1)
    prototypes = Prototypes()
    prototypes.add(torch.randn(40, 5), torch.tensor([2, 3] * 20))  # the second task's classes first
    prototypes.add(torch.randn(40, 5) + 1, torch.tensor([0, 1] * 20))
    f = torch.randn(500, 5)
    head = prototypes.head(4)
    assert torch.equal(head(f).argmax(1), prototypes.predict(f))
    assert torch.equal(prototypes.predict(prototypes.vectors), torch.tensor(prototypes.classes))
    with pytest.raises(ValueError, match="prototype of each"):
        prototypes.head(5)


def test_feature_distillation_measures_backbone_drift_only():
    model = create_model("vit_lite_2_2_32", class_attention=True).train()
    distill = FeatureDistillation(model, weight=2.0)
    x = torch.randn(3, 3, 32, 32)
    model(x)
    assert float(distill.regularization().detach()) == 0.0
    with torch.no_grad():
        model.blocks[0].mlp.fc2.bias.add_(0.5)  # every token moves by 0.5 in every channel
    model(x)
    assert float(distill.regularization().detach()) == pytest.approx(2.0 * 0.25, rel=1e-5)
    distill.remove()
    model(x + 1)
    assert not distill.captured


def test_options_that_do_not_go_with_tasks():
    with pytest.raises(UsageError, match="goes with --tasks"):
        TrainConfig(continual="joint")
    with pytest.raises(UsageError, match="from scratch"):
        TrainConfig(tasks=5, init="x")
    with pytest.raises(UsageError, match="--resume"):
        train_continual(TrainConfig(tasks=2), "/nonexistent", resume=True)
    with pytest.raises(UsageError, match="built-in ViT-Lite"):
        train_continual(TrainConfig(model="deit_tiny_patch16_224", tasks=2), "/nonexistent")
    with pytest.raises(UsageError, match="train_continual"):
        train(TrainConfig(tasks=2), "/nonexistent")
    with pytest.raises(UsageError, match="needs --tasks"):
        train_continual(TrainConfig(), "/nonexistent")


@pytest.fixture(scope="module")
def continual_runs(tmp_path_factory) -> dict[str, str]:
    """Each method on digits in 2 tasks, vit_lite_2_2_32, 6 epochs per task (about 10 s each)."""
    out = tmp_path_factory.mktemp("continual")
    for method in ("gated", "finetune", "joint"):
        train_continual(TrainConfig(model="vit_lite_2_2_32", tasks=2, continual=method, epochs=6, warmup_epochs=1,
                                    lr=2e-3), out / method)
    return {m: str(out / m) for m in ("gated", "finetune", "joint")}


def test_each_method_writes_a_checkpoint_with_its_scores(continual_runs):
    for method, path in continual_runs.items():
        meta = json.load(open(path + "/meta.json"))
        record = meta["continual"]
        assert record["method"] == method and record["tasks"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
        assert len(record["seen_accuracy"]) == 2 and [len(r) for r in record["task_accuracy"]] == [1, 2]
        assert meta["model_args"] == {"num_classes": 10, "class_attention": True}
        # the last step scores every class: what the shipped (float16) checkpoint scores, up to rounding
        assert meta["test_accuracy"] == pytest.approx(record["seen_accuracy"][-1], abs=0.02)
        model, _ = load_model(path)
        assert isinstance(model, ClassAttentionViT)
    first = lambda m: json.load(open(continual_runs[m] + "/meta.json"))["continual"]  # noqa: E731
    assert first("joint")["seen_accuracy"][-1] > first("finetune")["seen_accuracy"][-1]  # forgetting shows
    assert 0 < first("gated")["gated_units_used"] <= 1


def test_gated_checkpoint_runs_under_mpc_in_agreement(continual_runs):
    model, meta = load_model(continual_runs["gated"])
    x = meta.normalization.apply(torch.rand(2, 3, 32, 32)).clamp(-3, 3)
    with torch.no_grad():
        plain = model(x)
        assert torch.equal(model.head(features(model, x)).argmax(1), plain.argmax(1))

    def party(rank: int):
        plan = SecurePlan(model)
        plan.encrypt_weights(rank)
        return plan(plan.encrypt_input(x if rank == 1 else None, rank, tuple(x.shape))).get_plain_text(dst=1)

    logits = as_tensor(run_2pc(party)[1])
    assert (logits - plain).abs().max() < 0.1 * plain.abs().max()
    assert torch.equal(logits.argmax(1), plain.argmax(1))
