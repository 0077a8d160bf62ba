"""Bad input is refused with one line and exit code 2, before any party starts."""

from __future__ import annotations

import numpy as np
import pytest

from secvit import cli
from secvit.checkpoint import load_meta
from secvit.inputs import InputError, fixed_point_limit, load_images, prepare_images


@pytest.fixture()
def no_parties(monkeypatch):
    """Fail the test if any party process would start."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a party was started")

    monkeypatch.setattr("secvit.session.run_local", forbidden)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((1, 3, 32, 32), np.float32), r"expected images of shape \(N, 3, 16, 16\)"),
        (np.zeros((1, 1, 16, 16), np.float32), r"expected images of shape \(N, 3, 16, 16\)"),
        (np.full((1, 3, 16, 16), np.nan, np.float32), "NaN or Inf"),
        (np.full((1, 3, 16, 16), 7.0, np.float32), r"expected float pixel values in \[0, 1\]"),
        (np.zeros((2, 2), np.float32), "expected images of shape"),
    ],
)
def test_bad_images_exit_2_before_parties(tmp_path, tiny_ckpt, no_parties, capsys, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    assert cli.main(["infer", str(path), "--checkpoint", tiny_ckpt]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("secvit: error:")
    assert __import__("re").search(message, err), err


def test_values_beyond_fixed_point_range(tiny_ckpt):
    meta = load_meta(tiny_ckpt)
    meta.normalization = type(meta.normalization)((0.0,) * 3, (1e-6,) * 3)
    with pytest.raises(InputError, match="fixed-point encoding holds"):
        prepare_images(np.ones((1, 3, 16, 16), np.float32), meta)
    assert fixed_point_limit(16) == 2**15


def test_png_and_npy_inputs(tmp_path, tiny_ckpt):
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.ones((2, 16, 16, 3), np.float32) * 0.5)
    x, labels, names = load_images([str(tmp_path / "a.png"), str(tmp_path / "b.npy")], load_meta(tiny_ckpt))
    assert x.shape == (3, 3, 16, 16) and labels is None and names == ["a.png", "b.npy[0]", "b.npy[1]"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--checkpoint", "/nonexistent"], "not a directory"),
        (["infer", "missing.png"], "no such file"),
        (["train", "--model", "vit_nope", "--out", "/tmp/x", "--epochs", "1"], "unknown model"),
        (["demo", "--data", "npz:x.npz"], "no shipped checkpoint for --data npz:x.npz"),
        (["demo", "--data", "mnist:/nonexistent"], "no shipped checkpoint"),
    ],
)
def test_cli_errors(no_parties, capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
