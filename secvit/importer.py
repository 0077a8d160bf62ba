"""``secvit import``: a plaintext-trained ``state_dict`` (timm's or secvit's) as a checkpoint.

The weights file is a safetensors file or a PyTorch file, which is loaded with
``weights_only=True`` (tensors and containers only: no code runs). Its keys and shapes are
checked against the named architecture before anything is written, and every mismatch
is named. The normalisation is the one the model was trained with (``--norm``) or, with
``--data`` alone, the per-channel statistics of that dataset's training split (what
``secvit train`` stores); with ``--data`` the imported model's test accuracy is measured
and recorded as every checkpoint's is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file

from .checkpoint import CheckpointError, Meta, check_model, check_model_args, save_checkpoint
from .data import Normalization, load_dataset
from .models import create_model

__all__ = ["import_weights", "parse_norm", "read_state_dict"]

_WRAPPERS = ("state_dict", "model", "model_ema")  # keys under which training scripts nest a state_dict
_SHOWN = 8  # mismatches named per kind


def parse_norm(text: str, channels: int) -> Normalization:
    """``MEAN,STD`` (one value each, for every channel) or ``C`` means then ``C`` stds.

    Raises:
        CheckpointError: not numbers, a count other than 2 or 2 C, or a std that is not positive.
    """
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CheckpointError(f"--norm {text!r}: expected numbers MEAN,STD or {channels} means then {channels} stds")
    if len(values) == 2:
        values = [values[0]] * channels + [values[1]] * channels
    if len(values) != 2 * channels or min(values[channels:]) <= 0:
        raise CheckpointError(f"--norm {text!r}: expected MEAN,STD or {channels} means then {channels} positive stds")
    return Normalization(mean=tuple(values[:channels]), std=tuple(values[channels:]))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or of a PyTorch file loaded with
    ``weights_only=True`` (a ``state_dict``, or one nested under ``state_dict``, ``model``
    or ``model_ema``).

    Raises:
        CheckpointError: missing, unreadable, refused by the safe loader, or not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--weights {path}: no such file")
    safetensors = path.suffix == ".safetensors"
    try:
        state: Any = load_file(str(path)) if safetensors else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # each loader raises its own types; weights_only refuses code as an UnpicklingError
        kind = "safetensors" if safetensors else "a PyTorch file (weights_only=True)"
        raise CheckpointError(f"--weights {path}: unreadable as {kind}: {e}") from None
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"--weights {path}: expected a state_dict (names to tensors)")
    return state


def _mismatches(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (the architecture's {tuple(v.shape)})" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    out = []
    for what, names in (("missing", missing), ("not in the architecture", unexpected), ("of another shape", shapes)):
        if names:
            more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            out.append(f"{len(names)} {what}: {', '.join(names[:_SHOWN])}{more}")
    return out


def _input_geometry(model: nn.Module, args: dict[str, Any]) -> tuple[int, int]:
    """The input size and channels the architecture takes: its patch embedding's where it
    has one, else the ``img_size`` argument (or timm's default) and its first convolution's."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None:
        return embed.img_size[0], embed.proj.in_channels
    size = args.get("img_size") or model.pretrained_cfg["input_size"][-1]
    return int(size), next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def import_weights(model_name: str, model_args: dict[str, Any], weights: str | Path, out: str | Path,
                   data: str | None = None, norm: str | None = None) -> dict[str, Any]:
    """Write a checkpoint of ``model_name`` (with ``model_args``) holding ``weights``.

    Returns:
        The written ``meta.json`` contents (with ``test_accuracy`` where ``data`` is given).

    Raises:
        CheckpointError: an unknown model or refused arguments, unreadable weights, keys or
            shapes that do not match the architecture (all named), or neither ``data`` nor
            ``norm``.
    """
    from .train import save_evaluated

    if data is None and norm is None:
        raise CheckpointError("give --data SPEC (its test split measures the import; its training split gives the "
                              "normalisation) or --norm MEAN,STD (the normalisation the model was trained with)")
    name = check_model(model_name, "--model")
    args = check_model_args(name, model_args, "--model-args")
    model = create_model(name, **args).eval()
    img_size, in_chans = _input_geometry(model, args)
    normalization = parse_norm(norm, in_chans) if norm else None
    state = read_state_dict(weights)
    problems = _mismatches(model, state)
    if problems:
        raise CheckpointError(f"--weights {weights} does not fit {name} {args}: " + "; ".join(problems))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    dataset = load_dataset(data, img_size, in_chans) if data else None
    normalization = normalization or Normalization.fit(dataset.x_train)
    meta = Meta(model=name, model_args=args, img_size=img_size, in_chans=in_chans, num_classes=model.num_classes,
                normalization=normalization, data=data or "", extra={"imported_from": str(weights)})
    if dataset is None:
        save_checkpoint(model, meta, out, torch.float32)
        return meta.to_dict()
    return save_evaluated(model, meta, dataset, out, torch.float32)
