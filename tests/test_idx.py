"""IDX datasets: the file format on hand-made files, clear errors, their test split as a client's
input, and Debian's Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from secvit.checkpoint import Meta
from secvit.data import Normalization, load_dataset
from secvit.inputs import InputError, load_images, own_test_images
from secvit.errors import UsageError
from secvit.idx import FASHION_MNIST_DIR, FASHION_MNIST_PACKAGE, load_idx_dir, read_idx


def _write(path: Path, values: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, values.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in values.shape)
    data = header + values.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _dataset(root: Path, compress: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)), "train-labels-idx1-ubyte": np.arange(6) % 3,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)), "t10k-labels-idx1-ubyte": np.array([2, 1, 0, 2])}
    for name, values in arrays.items():
        _write(root / name, values, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_read_back_as_written(tmp_path, compress):
    arrays = _dataset(tmp_path, compress)
    x_tr, x_te, y_tr, y_te = load_idx_dir(tmp_path, "test data")
    assert np.array_equal(x_tr, arrays["train-images-idx3-ubyte"]) and np.array_equal(y_te, [2, 1, 0, 2])
    data = load_dataset(f"idx:{tmp_path}", 16, 1)
    assert data.x_train.shape == (6, 1, 16, 16) and data.x_test.shape == (4, 1, 16, 16) and data.num_classes == 3
    assert float(data.x_train.max()) <= 1.0 and data.y_train.tolist() == [0, 1, 2, 0, 1, 2]


def test_malformed_and_missing_files_say_what_is_wrong(tmp_path):
    _dataset(tmp_path, compress=False)
    broken = tmp_path / "t10k-labels-idx1-ubyte"
    broken.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(4))
    with pytest.raises(UsageError, match=r"shape \(5,\) \(5 values\), the file holds 4"):
        read_idx(broken)
    broken.write_bytes(b"PK\x03\x04")
    with pytest.raises(UsageError, match="not an IDX file"):
        load_dataset(f"mnist:{tmp_path}", 28, 1)
    broken.unlink()
    with pytest.raises(UsageError, match="MNIST: t10k-labels-idx1-ubyte .* not found"):
        load_dataset(f"mnist:{tmp_path}", 28, 1)


def test_missing_fashion_mnist_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr("secvit.idx.FASHION_MNIST_DIR", tmp_path)
    monkeypatch.setattr("secvit.data.FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(UsageError, match=f"apt-get install {FASHION_MNIST_PACKAGE}"):
        load_dataset("fashion-mnist", 28, 1)


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason=f"Fashion-MNIST is not installed (Debian package "
                                                            f"{FASHION_MNIST_PACKAGE}; .ci/run installs it as root)")
def test_debians_fashion_mnist_is_the_official_split():
    data = load_dataset("fashion-mnist", 28, 1)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.num_classes == 10 and data.y_test.bincount().tolist() == [1000] * 10


def test_an_idx_test_split_is_a_client_input(tmp_path):
    arrays = _dataset(tmp_path, compress=True)
    meta = Meta(model="vit_lite_6_4_28", model_args={}, img_size=28, in_chans=1, num_classes=3,
                normalization=Normalization((0.5,), (0.25,)), data=f"idx:{tmp_path}")
    x, labels, names = load_images([f"idx:{tmp_path}-test:3"], meta)
    expected = (arrays["t10k-images-idx3-ubyte"][:3, None] / 255.0 - 0.5) / 0.25
    assert torch.allclose(x, torch.as_tensor(expected, dtype=x.dtype), atol=1e-6)
    assert labels == [2, 1, 0] and names == [f"idx:{tmp_path}-test[{i}]" for i in range(3)]
    with pytest.raises(InputError, match="-test:N with N >= 1"):
        load_images([f"idx:{tmp_path}-test:0"], meta)


@pytest.mark.parametrize("data, expected", [("digits", "digits-test:3"), ("idx:/d", "idx:/d-test:3"),
                                            ("fashion-mnist", "fashion-mnist-test:3"), ("", "digits-test:3")])
def test_profiles_run_on_the_checkpoints_own_test_images(data, expected):
    meta = Meta(model="vit_lite_1_2_16", model_args={}, img_size=16, in_chans=3, num_classes=10,
                normalization=Normalization((0.5,) * 3, (0.25,) * 3), data=data)
    assert own_test_images(meta, 3) == expected
