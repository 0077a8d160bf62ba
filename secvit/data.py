"""Datasets: scikit-learn's digits (the default; ships with the package, no download),
Fashion-MNIST (``fashion-mnist``: Debian's ``dataset-fashion-mnist`` package, or
``fashion-mnist:DIR``), ``mnist:DIR`` and ``idx:DIR`` (IDX files, :mod:`secvit.idx`), a
user's ``npz:PATH`` (arrays ``x`` and ``y``) and ``cifar10:DIR`` (python pickle batches);
and one regression dataset, ``holo-sim[:N]`` (N simulated holograms, 6,000 by default,
the last sixth for testing; the target is the focus distance in µm, :mod:`secvit.holo`).

Every source yields float images in [0, 1], shape (N, C, H, W), resized to the model's
input size; normalisation (per-channel mean and std of the training split) is stored
with the checkpoint so that inference applies exactly what training saw.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from .errors import UsageError
from .idx import FASHION_MNIST_DIR, load_idx_dir

__all__ = ["DATASET_KINDS", "DATA_SPECS", "Dataset", "Normalization", "load_dataset", "to_unit_range", "resize"]

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalisation ``(x - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch (N, C, H, W) of [0, 1] images."""
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(mean=tuple(d["mean"]), std=tuple(d["std"]))

    @classmethod
    def fit(cls, x: torch.Tensor) -> "Normalization":
        """Per-channel mean and std of a batch of [0, 1] images."""
        return cls(
            mean=tuple(round(v, 6) for v in x.mean(dim=(0, 2, 3)).tolist()),
            std=tuple(round(v, 6) for v in x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()),
        )


@dataclass
class Dataset:
    """Train and test splits of [0, 1] images at the model's resolution."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    unit: str | None = None  # a regression target's unit (y float); None: class labels

    @property
    def regression(self) -> bool:
        return self.unit is not None


def resize(x: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) images to ``size``, grey replicated to ``channels``."""
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if x.shape[1] == 1 and channels > 1:
        x = x.repeat(1, channels, 1, 1)
    if x.shape[1] != channels:
        raise UsageError(f"images have {x.shape[1]} channels; the model expects {channels}")
    return x.clamp(0.0, 1.0)


def to_unit_range(x: np.ndarray) -> torch.Tensor:
    """Convert an image array to float (N, C, H, W) in [0, 1].

    Accepts uint8 (0..255) or floats already in [0, 1]; (N, H, W), (N, H, W, C) with
    C in {1, 3} and (N, C, H, W) layouts.

    Raises:
        ValueError: the array has another layout, non-finite values or values out of range.
    """
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise UsageError(f"expected images of shape (N, H, W), (N, H, W, C) or (N, C, H, W); got {x.shape}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = np.moveaxis(x, -1, 1)
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UsageError("images contain NaN or Inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise UsageError(f"expected float pixel values in [0, 1] (or uint8 0..255); got range [{lo:.4g}, {hi:.4g}]")
    return torch.from_numpy(x)


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    return train_test_split(
        x, d.target, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=d.target
    )


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path) as f:
        if "x" not in f or "y" not in f:
            raise UsageError(f"{path}: expected arrays 'x' and 'y', found {sorted(f.files)}")
        x, y = f["x"], f["y"]
    if len(x) != len(y):
        raise UsageError(f"{path}: {len(x)} images but {len(y)} labels")
    rng = np.random.default_rng(DIGITS_SEED)
    order = rng.permutation(len(x))
    cut = int(round(len(x) * (1 - DIGITS_TEST_FRACTION)))
    return x[order[:cut]], x[order[cut:]], y[order[:cut]], y[order[cut:]]


def _cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: expected CIFAR-10 python batches in {root}")
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return d[b"data"].reshape(-1, 3, 32, 32), np.asarray(d[b"labels"])

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = batch("test_batch")
    return np.concatenate([b[0] for b in train]), xt, np.concatenate([b[1] for b in train]), yt


DATASET_KINDS = ("digits", "fashion-mnist", "mnist", "idx", "npz", "cifar10", "holo-sim")
DATA_SPECS = ("'digits', 'fashion-mnist[:DIR]', 'mnist:DIR', 'idx:DIR', 'npz:PATH', 'cifar10:DIR' or "
              "'holo-sim[:N]' (regression)")
HOLO_DEFAULT = 6000
HOLO_TEST_SHARE = 6  # the last N / 6 holograms are the test split


def _holograms(spec: str, arg: str, img_size: int, in_chans: int) -> Dataset:
    from .holo import simulate_holograms

    if arg and not (arg.isdigit() and 12 <= int(arg) <= 200_000):
        raise UsageError(f"holo-sim:N takes a number of holograms from 12 to 200000, got {arg!r}")
    n = int(arg) if arg else HOLO_DEFAULT
    x, z = simulate_holograms(n)
    cut = n - n // HOLO_TEST_SHARE
    images = resize(torch.from_numpy(x)[:, None], img_size, in_chans)
    y = torch.from_numpy(z)
    return Dataset(name=spec, x_train=images[:cut], y_train=y[:cut], x_test=images[cut:], y_test=y[cut:],
                   num_classes=1, unit="µm")


def load_dataset(spec: str, img_size: int, in_chans: int = 3) -> Dataset:
    """Load a dataset by its spec (:data:`DATA_SPECS`) at the model's resolution.

    The digits split is deterministic (stratified, seed 0): 1,437 train and 360 test
    images; the IDX datasets keep their official split (Fashion-MNIST and MNIST: 60,000
    and 10,000).

    Raises:
        UsageError: unknown ``spec``, missing files or malformed data.
    """
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        x_tr, x_te, y_tr, y_te = _digits()
    elif kind == "fashion-mnist":
        x_tr, x_te, y_tr, y_te = load_idx_dir(Path(arg) if arg else FASHION_MNIST_DIR, "Fashion-MNIST")
    elif kind in ("mnist", "idx") and arg:
        x_tr, x_te, y_tr, y_te = load_idx_dir(Path(arg), "MNIST" if kind == "mnist" else "IDX data")
    elif kind == "npz" and arg:
        x_tr, x_te, y_tr, y_te = _npz(Path(arg))
    elif kind == "cifar10" and arg:
        x_tr, x_te, y_tr, y_te = _cifar10(Path(arg))
    elif kind == "holo-sim":
        return _holograms(spec, arg, img_size, in_chans)
    else:
        raise UsageError(f"unknown data {spec!r}: expected {DATA_SPECS}")
    y_tr, y_te = torch.as_tensor(y_tr, dtype=torch.long), torch.as_tensor(y_te, dtype=torch.long)
    return Dataset(
        name=spec,
        x_train=resize(to_unit_range(x_tr), img_size, in_chans),
        y_train=y_tr,
        x_test=resize(to_unit_range(x_te), img_size, in_chans),
        y_test=y_te,
        num_classes=int(max(y_tr.max(), y_te.max())) + 1,
    )
