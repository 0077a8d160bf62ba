"""The IDX files of MNIST and Fashion-MNIST (LeCun et al.; Xiao, Rasul and Vollgraf, 2017).

An IDX file is a big-endian header, two zero bytes, a type code (0x08: unsigned bytes)
and the number of dimensions, then one 32-bit size per dimension, then the values. A
dataset directory holds four of them, optionally gzipped: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``
(the names of the original distribution and of Debian's ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from .errors import UsageError

__all__ = ["FASHION_MNIST_DIR", "FASHION_MNIST_PACKAGE", "load_idx_dir", "read_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
_UBYTE = 0x08
_SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array of one IDX file (gzipped or not).

    Raises:
        UsageError: not an unsigned-byte IDX file, or sizes that disagree with its length.
    """
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != _UBYTE:
        raise UsageError(f"{path}: not an IDX file of unsigned bytes (expected header 00 00 08 <dims>)")
    dims = data[3]
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(data) != header + math.prod(shape):
        raise UsageError(f"{path}: header says shape {shape} ({math.prod(shape)} values), "
                         f"the file holds {len(data) - header}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()  # writable, as torch wants


def _find(root: Path, split: str, what: str, dims: int) -> Path:
    name = f"{_SPLITS[split]}-{what}-idx{dims}-ubyte"
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


def load_idx_dir(root: Path, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, x_test, y_train, y_test)`` of an IDX dataset directory (the official
    train/test split); ``what`` names the dataset in errors.

    Raises:
        UsageError: a missing file (the message says which, and for Fashion-MNIST at its
            default place, the package to install), or malformed files.
    """
    try:
        images = {s: read_idx(_find(root, s, "images", 3)) for s in _SPLITS}
        labels = {s: read_idx(_find(root, s, "labels", 1)) for s in _SPLITS}
    except FileNotFoundError as missing:
        hint = (f": install Debian's {FASHION_MNIST_PACKAGE} (apt-get install {FASHION_MNIST_PACKAGE}) or pass "
                "fashion-mnist:DIR" if root == FASHION_MNIST_DIR else "")
        raise UsageError(f"{what}: {missing} (or .gz) not found in {root}{hint}") from None
    for split in _SPLITS:
        if len(images[split]) != len(labels[split]):
            raise UsageError(f"{root}: {len(images[split])} {split} images but {len(labels[split])} labels")
    return images["train"], images["test"], labels["train"], labels["test"]
