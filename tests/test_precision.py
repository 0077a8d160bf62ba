"""secvit precision: the fewest-bits rule on hand-made rows, and a sweep end to end."""

from __future__ import annotations

import json

import pytest

from secvit import cli
from secvit.precision import fewest_bits


def _row(bits: int, reference: float, emulation: float, agreement: float = 1.0) -> dict:
    return {"precision_bits": bits, "accuracy": {"reference": reference, "emulation": emulation},
            "agreement_mpc_vs_reference": agreement}


@pytest.mark.parametrize("rows, expected", [
    ([_row(16, 0.9, 0.9), _row(12, 0.9, 0.897), _row(10, 0.9, 0.80)], 12),    # 0.3 points lost at 12
    ([_row(16, 0.9, 0.9), _row(12, 0.9, 0.894), _row(14, 0.9, 0.9)], 14),     # 0.6 points at 12
    ([_row(16, 0.9, 0.9), _row(12, 0.9, 0.9), _row(14, 0.9, 0.89)], 16),      # 14 fails: 12 does not count
    ([_row(16, 0.9, 0.9), _row(12, 0.9, 0.9, agreement=0.95)], 16),           # MPC disagrees at 12
    ([_row(16, 0.9, 0.8)], None),
])
def test_fewest_bits_keeps_every_larger_count_within_tolerance(rows, expected):
    assert fewest_bits(rows, 0.005) == expected


def test_a_sweep_reports_each_precision(tiny_ckpt, tmp_path):
    out = tmp_path / "sweep.json"
    assert cli.main(["precision", "--checkpoint", tiny_ckpt, "--bits", "12,16", "--n", "40", "--mpc-n", "2",
                     "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["precision_bits"] for r in report["rows"]] == [16, 12]
    assert all(r["mpc_images"] == 2 and r["agreement_mpc_vs_reference"] == 1.0 for r in report["rows"])
    local = [r["truncation"]["local_corrupted_images_per_million"] for r in report["rows"]]
    assert local[1] <= local[0]  # fewer bits, smaller encodings: local truncation fails less often
    assert report["fewest_bits"] in (12, 16)


@pytest.mark.parametrize("bits", ["12,x", "4,16"])
def test_bad_bits_are_refused(bits, capsys):
    assert cli.main(["precision", "--bits", bits]) == 2
    assert "--bits" in capsys.readouterr().err
