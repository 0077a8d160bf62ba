"""A checkpoint's recorded precision (``meta.json`` ``precision_bits``): checked when read,
the default of its sessions, and written by ``secvit check --record-precision`` only when
MPC agreed with the reference on every image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from secvit import cli
from secvit.check import record_precision, run_check
from secvit.checkpoint import DEFAULT_PRECISION, META, CheckpointError, Meta, load_meta
from secvit.errors import UsageError

SHIPPED = "checkpoints/vit_lite_7_4_32-digits"


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "ckpt"))


@pytest.mark.parametrize("bits", [7, 21, "18", 18.0, True])
def test_meta_refuses_a_precision_exact_truncation_cannot_run(bits):
    d = {**json.loads((Path(SHIPPED) / META).read_text()), "precision_bits": bits}
    with pytest.raises(CheckpointError, match=r"precision_bits must be an integer in \[8, 20\]"):
        Meta.from_dict(d)


def test_unrecorded_checkpoints_run_at_16_bits():
    assert load_meta(SHIPPED).precision_bits == DEFAULT_PRECISION == 16


def test_check_records_its_precision_and_later_sessions_take_it(tmp_path):
    ckpt = _copy(tmp_path)
    args = ["check", "--checkpoint", str(ckpt), "--n", "6", "--mpc-n", "2", "--batch-size", "2", "--precision", "14"]
    assert cli.main([*args, "--record-precision"]) == 0
    assert load_meta(ckpt).precision_bits == 14
    assert run_check(str(ckpt), n=2, mpc_n=1, batch_size=1)["precision_bits"] == 14  # no --precision: the record
    assert run_check(str(ckpt), n=2, mpc_n=1, batch_size=1, precision_bits=16)["precision_bits"] == 16


def test_no_record_without_full_agreement_or_under_a_policy(tmp_path, capsys):
    ckpt = _copy(tmp_path)
    before = (ckpt / META).read_text()
    report = {"checkpoint": str(ckpt), "precision_bits": 12, "agreement_mpc_vs_reference": 0.999}
    with pytest.raises(UsageError, match="99.90% of the images at 12 bits"):
        record_precision(report)
    with pytest.raises(UsageError, match="without --policy"):
        record_precision({**report, "agreement_mpc_vs_reference": 1.0}, policy="mpcformer")
    assert (ckpt / META).read_text() == before
    code = cli.main(["check", "--checkpoint", str(ckpt), "--policy", "mpcformer", "--record-precision"])
    assert code != 0 and "without --policy" in capsys.readouterr().err  # refused before any party starts
    assert (ckpt / META).read_text() == before
