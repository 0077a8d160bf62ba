"""Post-training quantization: each quantizer on hand-computed values, RepQ-ViT's fold
leaves the float model unchanged, and a quantized checkpoint runs under MPC."""

from __future__ import annotations

import pytest
import torch

from secvit import cli
from secvit.check import run_check
from secvit.checkpoint import load_meta, load_model
from secvit.data import load_dataset
from secvit.errors import UsageError
from secvit.quantize.ptq import reparameterize
from secvit.quantize.quantizers import (log2_sqrt2_reparameterized, log_sqrt2, shift_uniform_log2, uniform,
                                        uniform_params)
from secvit.quantize.run import quantize_checkpoint


def test_uniform_quantizer_on_hand_values():
    scale, zero = uniform_params(torch.tensor(-0.5), torch.tensor(1.0), 2)  # s = 1.5 / 3, z = round(0.5 / 0.5)
    assert (float(scale), float(zero)) == (0.5, 1.0)
    x = torch.tensor([-0.5, 0.2, 0.9, 2.0])  # x / s = -1, 0.4, 1.8, 4 -> codes 0, 1, 3, 3 (clamped)
    assert uniform(x, scale, zero, 2).tolist() == [-0.5, 0.0, 1.0, 1.0]


def test_log_sqrt2_and_its_base_2_form():
    x = torch.tensor([1.0, 0.5, 0.3, 0.0])  # -2 log2 x = 0, 2, 3.47, inf -> codes 0, 2, 3, 7
    assert log_sqrt2(x, 3).tolist() == pytest.approx([1.0, 0.5, 2**-1.5, 2**-3.5])
    q = torch.arange(8.0)
    assert torch.allclose(log2_sqrt2_reparameterized(q), torch.exp2(-q / 2), rtol=1e-6)


def test_shift_uniform_log2_on_a_hand_value():
    # -log2(0.25 + 1/16) / 0.5 = 3.36 -> code 3 -> 2^-1.5 - 1/16
    assert shift_uniform_log2(torch.tensor([0.25]), 3, 2**-4, 0.5).item() == pytest.approx(2**-1.5 - 2**-4)


def test_repq_fold_keeps_the_float_model_and_makes_one_scale_per_layer(tiny_ckpt):
    model, meta = load_model(tiny_ckpt)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    x = meta.normalization.apply(data.x_train[:32])
    with torch.no_grad():
        before = model(x)
        seen = []
        hook = model.blocks[0].norm1.register_forward_hook(lambda m, a, out: seen.append(out.flatten(0, 1)))
        model(x)
        reparameterize(model, x, 8)
        after = model(x)
        hook.remove()
    ranges_before = seen[0].amax(0) - seen[0].amin(0)
    assert (after - before).abs().max() < 1e-4
    channel_range = seen[-1].amax(0) - seen[-1].amin(0)
    assert channel_range.std() / channel_range.mean() < 0.05 < ranges_before.std() / ranges_before.mean()


@pytest.mark.parametrize("method", ["minmax", "repq", "isvit"])
def test_a_quantized_checkpoint_runs_under_mpc(tiny_ckpt, tmp_path, method):
    report = quantize_checkpoint(tiny_ckpt, 4, 8, method, tmp_path / method, calib=32, tune_steps=2)
    assert report["accuracy"]["quantized"] > 0.4 and report["secure_engine"]["dropped"].startswith("activation")
    meta = load_meta(tmp_path / method)
    assert meta.extra["quantization"]["method"] == method
    assert meta.extra["test_accuracy"] == pytest.approx(report["accuracy"]["weights_only"])
    model, _ = load_model(tmp_path / method)
    qkv = model.blocks[0].attn.qkv.weight
    rows = qkv if method != "minmax" else qkv.flatten()[None]
    assert max(len(torch.unique(r)) for r in rows) <= 2**4  # on the 4-bit grid, per channel or per tensor
    check = run_check(str(tmp_path / method), n=16, mpc_n=2, batch_size=2)
    assert check["agreement_mpc_vs_reference"] == 1.0


def test_bad_quantization_requests_are_refused(tiny_ckpt, tmp_path, capsys):
    with pytest.raises(UsageError, match="unknown --method"):
        quantize_checkpoint(tiny_ckpt, 8, 8, "gptq")
    with pytest.raises(UsageError, match="expected 2 to 16 bits"):
        quantize_checkpoint(tiny_ckpt, 1, 8, "repq")
    assert cli.main(["train", "--init", tiny_ckpt, "--policy", "mpcformer", "--epochs", "1", "--out",
                     str(tmp_path / "rewritten")]) == 0
    assert cli.main(["quantize", "--checkpoint", str(tmp_path / "rewritten")]) == 2
    assert "quantize the plain model" in capsys.readouterr().err
