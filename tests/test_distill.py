"""Distillation losses against their formulas, and distilled training end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from secvit.distill.losses import affinity_loss, kd_loss, log_affinity, nkd_loss


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


def test_affinity_matches_its_formula_on_two_tokens():
    """Tokens (3, 4) and (4, -3) are orthogonal unit directions (times 5): affinity rows
    softmax([1, 0] / tau) and softmax([0, 1] / tau); the student's tokens (1, 0), (1, 1)
    have cosine 1/sqrt(2)."""
    teacher = torch.tensor([[[3.0, 4.0], [4.0, -3.0]]])
    student = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    e = math.exp(10.0)
    t_rows = [[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]]
    assert log_affinity(teacher).exp()[0].flatten().tolist() == pytest.approx(sum(t_rows, []), rel=1e-6)
    c = math.exp(10.0 / math.sqrt(2))  # each row: itself at 10, the other at 10 cos = 10 / sqrt(2)
    s_rows = [[e / (e + c), c / (e + c)], [c / (e + c), e / (e + c)]]
    expected = sum(p * math.log(p / q) for t, s in zip(t_rows, s_rows) for p, q in zip(t, s)) / 2
    assert affinity_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    assert affinity_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same images and tokens"):
        affinity_loss(student[:, :1], teacher)


@pytest.mark.parametrize("method", ["kd", "nkd", "mpcformer", "uskd", "affinity"])
def test_distilled_training_records_its_method(tiny_ckpt, tmp_path, method):
    from secvit.train import TEACHER_METHODS, TrainConfig, train

    teacher = tiny_ckpt if method in TEACHER_METHODS else None
    cfg = TrainConfig(epochs=2, warmup_epochs=1, lr=3e-3, init=tiny_ckpt, teacher=teacher, distill=method)
    meta = train(cfg, tmp_path / method)
    assert meta["train_config"]["distill"] == method and meta["train_config"]["teacher"] == teacher
    assert meta["test_accuracy"] > 0.5  # the 1-block model stays trained


def _tap_pair():
    from secvit.distill.features import FeatureTap
    from secvit.models import create_model
    from secvit.rewrite import load_policy, rewrite

    torch.manual_seed(0)
    teacher = create_model("vit_lite_2_2_32").eval()
    student = rewrite(teacher, load_policy("mpcformer"))[0]
    return teacher, student, FeatureTap(teacher), FeatureTap(student)


def test_feature_taps_see_the_same_features_in_a_plain_and_a_rewritten_model():
    """Hidden states (embedding and every block output) and attention logits; the
    rewritten model's logits are the teacher's (the affine fold is exact)."""
    teacher, student, t_tap, s_tap = _tap_pair()
    x = torch.rand(2, 3, 32, 32)
    teacher(x), student(x)
    assert len(t_tap.hidden) == len(s_tap.hidden) == 3 and t_tap.layers == 2
    assert torch.allclose(t_tap.hidden[0], s_tap.hidden[0])
    for a, b in zip(t_tap.attention_logits(), s_tap.attention_logits()):
        assert a.shape == (2, 2, 65, 65)
    assert torch.allclose(t_tap.attention_logits()[0], s_tap.attention_logits()[0], atol=1e-5)
    teacher(x[:1])
    assert len(t_tap.hidden) == 3 and len(t_tap.hidden[0]) == 1  # each forward starts afresh


def test_mpcformer_stages_switch_from_features_to_soft_labels():
    from secvit.data import Normalization
    from secvit.distill.distillers import Batch, MPCFormerDistiller

    teacher, student, _, _ = _tap_pair()
    norm = Normalization(mean=[0.0], std=[1.0])
    distiller = MPCFormerDistiller(teacher, norm, student, stage1_share=0.5)
    raw, y = torch.rand(2, 3, 32, 32), torch.tensor([1, 2])
    logits = student(raw)
    stage1 = distiller.loss(logits, torch.tensor(0.0), Batch(raw, y, torch.arange(2), 0, 0.1))
    with torch.no_grad():
        t_logits = teacher(raw)
    stage2 = distiller.loss(logits, torch.tensor(0.0), Batch(raw, y, torch.arange(2), 0, 0.6))
    expected = -(F.softmax(t_logits, -1) * F.log_softmax(logits, -1)).sum(-1).mean()
    assert stage2.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stage1.item() > 0  # GELU -> Quad, softmax -> 2Quad: the student's features differ


def test_uskd_terms_match_their_formula():
    from secvit.distill.distillers import Batch, USKDDistiller
    from secvit.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_lite_1_2_16", num_classes=3).eval()
    uskd = USKDDistiller(model, num_classes=3, alpha=1.0, beta=0.1, weak_weight=0.0)
    raw, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 2])
    logits = model(raw)
    weak = uskd.head(uskd.tap.hidden[0][:, 0])  # depth 1 // 2 = 0: the embedding's CLS token
    p = F.softmax(logits, -1)
    s_t = p[torch.arange(2), y]
    target = -((s_t**2 + 1 - (s_t**2).mean()) * s_t.log()).mean()
    zipf = torch.tensor([1.0, 0.5]) / 1.5
    non_target = 0.0
    for i in range(2):
        others = [c for c in range(3) if c != y[i]]
        order = weak[i, others].argsort(descending=True)
        log_hat = F.log_softmax(logits[i, others], -1)
        non_target -= sum(zipf[r] * log_hat[order[r]] for r in range(2)) / 2
    got = uskd.loss(logits, torch.tensor(0.0), Batch(raw, y, torch.arange(2), 0, 0.0))
    assert got.item() == pytest.approx((target + 0.1 * non_target).item(), rel=1e-5)
    assert len(uskd.parameters()) == 2


def test_sparse_logits_rebuild_and_replay(tiny_ckpt, tmp_path):
    from secvit import cli
    from secvit.augment import shift_from_seeds
    from secvit.checkpoint import load_model
    from secvit.data import load_dataset
    from secvit.distill.sparse import LogitCache, rebuild

    p = rebuild(torch.tensor([[0.5, 0.3]], dtype=torch.float16), torch.tensor([[2, 0]], dtype=torch.int16), 4)
    assert torch.allclose(p, torch.tensor([[0.3, 0.1, 0.5, 0.1]]), atol=1e-3)
    out = tmp_path / "logits.safetensors"
    assert cli.main(["cache-logits", "--teacher", tiny_ckpt, "--top-k", "3", "--epochs", "2", "--out", str(out)]) == 0
    cache = LogitCache.load(out)
    assert cache.values.shape == (2, 1437, 3) and cache.values.dtype == torch.float16
    assert cache.indices.dtype == torch.int16 and cache.info["top_k"] == 3
    teacher, meta = load_model(tiny_ckpt)
    data = load_dataset("digits", 16, 3)
    idx = torch.tensor([5, 700])
    seeds, target = cache.batch(3, idx)  # epoch 3 replays stored pass 1
    with torch.no_grad():
        probs = F.softmax(teacher(meta.normalization.apply(shift_from_seeds(data.x_train[idx], seeds, 3))), -1)
    top = probs.topk(3, -1)
    assert torch.allclose(target.gather(1, top.indices), top.values, atol=1e-3)  # the replay sees the cached view
    student = tmp_path / "student"
    assert cli.main(["train", "--init", tiny_ckpt, "--distill", "sparse", "--cached-logits", str(out), "--epochs", "1",
                     "--out", str(student)]) == 0
    assert cli.main(["train", "--init", tiny_ckpt, "--distill", "sparse", "--cached-logits", str(tiny_ckpt),
                     "--epochs", "1", "--out", str(tmp_path / "bad")]) == 2


def test_distillation_options_are_checked():
    from secvit import cli

    from secvit.train import TrainConfig

    with pytest.raises(ValueError, match="--teacher goes with"):
        TrainConfig(teacher="checkpoints/vit_lite_7_4_32-digits")
    with pytest.raises(ValueError, match="--teacher goes with"):
        TrainConfig(teacher="checkpoints/vit_lite_7_4_32-digits", distill="uskd")
    with pytest.raises(ValueError, match="go together"):
        TrainConfig(distill="sparse")
    assert cli.main(["train", "--teacher", "checkpoints/vit_lite_7_4_32-digits", "--out", "/tmp/x"]) == 2
