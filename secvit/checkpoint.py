"""Checkpoints: a directory with ``model.safetensors`` (weights) and ``meta.json``.

``meta.json`` is public (architecture, normalisation, provenance): the client party reads
only it. The weights file is read by the model owner alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .data import Normalization
from .models import create_model, is_known

__all__ = ["CheckpointError", "Meta", "load_meta", "load_model", "save_checkpoint", "build_model"]

WEIGHTS = "model.safetensors"
META = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match its architecture."""


@dataclass
class Meta:
    """Public description of a checkpoint."""

    model: str
    model_args: dict[str, Any]
    img_size: int
    in_chans: int
    num_classes: int
    normalization: Normalization
    data: str = "digits"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        """Transformer blocks of the architecture (built once, without weights)."""
        from .rewrite.graph import block_layers

        return len(block_layers(create_model(self.model, **self.model_args)))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("normalization", "extra")}
        return {**d, "normalization": self.normalization.to_dict(), **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "meta.json") -> "Meta":
        required = ("model", "model_args", "img_size", "in_chans", "num_classes", "normalization")
        missing = [k for k in required if k not in d]
        if missing:
            raise CheckpointError(f"{source}: missing keys {missing}")
        known = set(required) | {"data"}
        return cls(
            model=d["model"],
            model_args=dict(d["model_args"]),
            img_size=int(d["img_size"]),
            in_chans=int(d["in_chans"]),
            num_classes=int(d["num_classes"]),
            normalization=Normalization.from_dict(d["normalization"]),
            data=d.get("data", "digits"),
            extra={k: v for k, v in d.items() if k not in known},
        )


def load_meta(ckpt: str | Path) -> Meta:
    """Read a checkpoint's public ``meta.json``.

    Raises:
        CheckpointError: the directory or its ``meta.json`` is missing or unreadable.
    """
    path = Path(ckpt) / META
    if not Path(ckpt).is_dir():
        raise CheckpointError(f"checkpoint {ckpt}: not a directory (expected {META} and {WEIGHTS} inside)")
    try:
        meta = Meta.from_dict(json.loads(path.read_text()), source=str(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt}: {META} not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not is_known(meta.model):
        raise CheckpointError(f"{path}: unknown model {meta.model!r}")
    return meta


def build_model(meta: Meta) -> nn.Module:
    """The checkpoint's architecture with freshly initialised (not loaded) weights;
    rewritten by its policy when ``meta.json`` records one (an MPC-friendly model), and
    its attention grouped (``gqa``: K/V heads per layer) when it records that."""
    model = create_model(meta.model, **meta.model_args).eval()
    if meta.extra.get("policy"):
        from .rewrite import rewrite
        from .rewrite.policy import policy_from_dict

        model = rewrite(model, policy_from_dict(meta.extra["policy"], source="meta.json"))[0]
    if meta.extra.get("gqa"):
        from .compress.gqa import to_gqa

        model = to_gqa(model, int(meta.extra["gqa"]))
    return model.eval()


def load_model(ckpt: str | Path) -> tuple[nn.Module, Meta]:
    """Build the architecture and load the weights (float32, eval mode).

    Raises:
        CheckpointError: weights missing, corrupt, or not matching the architecture.
    """
    meta = load_meta(ckpt)
    model = build_model(meta)
    path = Path(ckpt) / WEIGHTS
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt}: {WEIGHTS} not found") from None
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: corrupt or unreadable weights ({e})") from None
    state = {k: v.float() for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match {meta.model}: {e}") from None
    return model.eval(), meta


def save_checkpoint(model: nn.Module, meta: Meta, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write weights (``dtype``, float16 by default to keep shipped files small) and meta."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    (out / META).write_text(json.dumps({**meta.to_dict(), "weights_dtype": str(dtype).removeprefix("torch.")}, indent=2) + "\n")
    return out
