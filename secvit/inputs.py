"""The client's images: loading and validation, before any secret is shared.

Sources: ``.npy`` files (one image or a batch; uint8 0..255 or float in [0, 1]), PNG
files, or ``DATA-test:N``: the first N images of a dataset's test split, with labels
(``digits-test:8``, ``fashion-mnist-test:8``, ``mnist:DIR-test:8``; any spec of
:func:`secvit.data.load_dataset`).
Images must already have the model's size and channel count: secvit does not resize
behind the user's back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import Meta
from .data import DATASET_KINDS, load_dataset, to_unit_range
from .errors import SecvitError

__all__ = ["InputError", "fixed_point_limit", "load_images", "prepare_images", "own_test_images"]


class InputError(SecvitError, ValueError):
    """The client's images cannot be used with this model."""


def fixed_point_limit(precision_bits: int) -> float:
    """Largest |x| whose product with a value of equal size stays inside the 64-bit ring.

    CrypTen encodes x as round(x * 2^p); a product of two encodings is x y 2^(2p) before
    truncation and must stay below 2^62 (one bit of headroom for the sign of shares).
    """
    return float(2 ** ((62 - 2 * precision_bits) // 2))


def _read(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{path}: not a readable .npy array ({e})") from None
    if suffix == ".png":
        from PIL import Image

        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        except OSError as e:
            raise InputError(f"{path}: not a readable PNG ({e})") from None
        return arr[None]
    raise InputError(f"{path}: expected a .npy or .png file")


def prepare_images(arr: np.ndarray, meta: Meta, precision_bits: int = 16, source: str = "input") -> torch.Tensor:
    """Validate images and return them normalised, shape (N, C, H, W).

    Raises:
        InputError: wrong rank, shape, size or channel count; NaN/Inf; pixel values out of
            range; or normalised values beyond :func:`fixed_point_limit`.
    """
    expected = (meta.in_chans, meta.img_size, meta.img_size)
    if arr.ndim == 3 and (arr.shape == expected or arr.shape[-1] in (1, 3) or arr.shape == expected[1:] + (expected[0],)):
        arr = arr[None]
    try:
        x = to_unit_range(arr)
    except ValueError as e:
        raise InputError(f"{source}: {e}") from None
    if tuple(x.shape[1:]) != expected:
        raise InputError(
            f"{source}: expected images of shape (N, {expected[0]}, {expected[1]}, {expected[2]}) or "
            f"(N, {expected[1]}, {expected[2]}, {expected[0]}) for {meta.model}; got {tuple(arr.shape)}"
        )
    if len(x) == 0:
        raise InputError(f"{source}: no images")
    x = meta.normalization.apply(x)
    limit = fixed_point_limit(precision_bits)
    peak = float(x.abs().max())
    if peak > limit:
        raise InputError(
            f"{source}: normalised values reach {peak:.4g}; the {precision_bits}-bit fixed-point "
            f"encoding holds |x| <= {limit:.4g} safely"
        )
    return x


def _test_split(item: str) -> tuple[str, str] | None:
    """``(data spec, count)`` of a ``DATA-test:N`` item, None for a file name."""
    data, sep, count = item.rpartition("-test:")
    return (data, count) if sep and data.partition(":")[0] in DATASET_KINDS else None


def own_test_images(meta: Meta, n: int) -> str:
    """``DATA-test:N`` for the first ``n`` test images of the checkpoint's own data (the
    digits for a checkpoint imported without data)."""
    return f"{meta.data if _test_split(meta.data + '-test:1') else 'digits'}-test:{n}"


def load_images(spec: list[str], meta: Meta, precision_bits: int = 16) -> tuple[torch.Tensor, list[int] | None, list[str]]:
    """Load and validate the client's images.

    Args:
        spec: File paths, or the single item ``DATA-test:N``.
        meta: The checkpoint's public description (size, channels, normalisation).
        precision_bits: Fixed-point precision the parties will use.

    Returns:
        Normalised images (N, C, H, W), labels when the source has them, and a name per image.
    """
    split = _test_split(spec[0]) if len(spec) == 1 else None
    if split is not None:
        name, count = split
        if not count.isdigit() or int(count) < 1:
            raise InputError(f"{spec[0]}: expected {name}-test:N with N >= 1")
        data = load_dataset(name, meta.img_size, meta.in_chans)
        n = min(int(count), len(data.x_test))
        x = prepare_images(data.x_test[:n].numpy(), meta, precision_bits, source=spec[0])
        return x, data.y_test[:n].tolist(), [f"{name}-test[{i}]" for i in range(n)]
    if not spec:
        raise InputError("no input images given")
    batches, names = [], []
    for item in spec:
        path = Path(item)
        x = prepare_images(_read(path), meta, precision_bits, source=str(path))
        batches.append(x)
        names += [path.name] if len(x) == 1 else [f"{path.name}[{i}]" for i in range(len(x))]
    return torch.cat(batches), None, names
