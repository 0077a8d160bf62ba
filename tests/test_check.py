"""`secvit check` and `secvit rewrite` end to end on the small trained checkpoint."""

from __future__ import annotations

import json

import torch

from protocols.fixed_point import TruncationStats
from protocols.truncation import valid_magnitude
from secvit import cli
from secvit.check import run_check
from secvit.truncation_risk import truncation_risk


SHIPPED = "checkpoints/vit_lite_7_4_32-digits"


def test_check_four_way(tmp_path):
    """On a shipped checkpoint (the tiny test model's LayerNorm rows of variance 6e-3
    amplify MPC's random truncation units past 0.01 in about one run in four)."""
    out = tmp_path / "check.json"
    assert cli.main(["check", "--checkpoint", SHIPPED, "--n", "40", "--mpc-n", "4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["accuracy"]) == {"original", "reference", "emulation", "mpc"}
    assert report["accuracy"]["original"] == report["accuracy"]["reference"]
    assert report["agreement_mpc_vs_reference"] == 1.0 and report["agreement_mpc_vs_emulation"] == 1.0
    assert report["max_abs_logit_error_mpc_vs_emulation"] < 0.01
    assert report["mpc_images"] == 4 and report["images"] == 40


def test_truncation_risk_from_the_emulated_magnitudes():
    stats = TruncationStats()
    stats.record(torch.tensor([2.0**40, 2.0**50]))  # local: (2^40 + 2^50) / 2^64 per image over 2 images
    risk = truncation_risk(stats, 2, "local")
    assert risk["expected_corrupted_images_per_million"] == risk["local_corrupted_images_per_million"]
    assert abs(risk["local_corrupted_images_per_million"] - 1e6 * (2.0**40 + 2.0**50) / 2.0**64 / 2) < 1e-9
    assert truncation_risk(stats, 2, "exact")["expected_corrupted_images_per_million"] == 0.0
    stats.record(torch.tensor([float(valid_magnitude()) * 2]))  # beyond exact truncation's range: unknown
    assert truncation_risk(stats, 2, "exact")["expected_corrupted_images_per_million"] is None


def test_check_with_a_policy_predicts_mpc():
    report = run_check(SHIPPED, "mpcformer", n=20, mpc_n=3)
    assert report["policy"] == "mpcformer"
    assert report["max_abs_logit_error_mpc_vs_emulation"] < 0.01


def test_rewrite_command_report(tmp_path, capsys):
    out = tmp_path / "rewrite.json"
    assert cli.main(["rewrite", "--model", "vit_lite_1_2_16", "--policy", "relu", "--report", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["before"]["attention: Attention"] == 1 and report["after"]["attention: 2xsoftmax.relu"] == 1
    assert "blocks.0.mlp.act -> gelu.relu" in capsys.readouterr().out
