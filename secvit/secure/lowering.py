"""How each traced node runs on CrypTensors.

A :class:`ModuleLowering` says which plaintext tensors of a leaf module are the model
owner's secrets (``prepare``, run by every party: on the client over ``meta`` tensors,
which yields shapes without values) and how the module runs on them (``forward``).
Function and method nodes that CrypTensors already implement (``reshape``, ``permute``,
``+``, ``@``, ``expand``, ...) run as they are; the tables below hold the rest.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from protocols.activation import gelu_tail_secure
from protocols.backend import crypten
from protocols.norm import layer_norm_secure
from protocols.softmax import softmax_exact_secure

__all__ = ["FUNCTIONS", "METHODS", "ModuleLowering", "lowering_for", "UnsupportedOpError"]

Secrets = dict[str, Any]


class UnsupportedOpError(TypeError):
    """The graph holds an operation the secure engine cannot run."""


@dataclass(frozen=True)
class ModuleLowering:
    """Secure twin of one leaf module type."""

    forward: Callable[..., Any]
    prepare: Callable[[nn.Module], dict[str, torch.Tensor]] = lambda m: {}


def _own_tensors(m: nn.Module) -> dict[str, torch.Tensor]:
    """A module's direct parameters (its secret weights), e.g. ``weight`` and ``bias``."""
    return {k: v.detach() for k, v in m.named_parameters(recurse=False)}


def _linear(m: nn.Linear, s: Secrets, x):
    y = x.matmul(s["weight"].t())
    return y + s["bias"] if "bias" in s else y


def _conv2d(m: nn.Conv2d, s: Secrets, x):
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UnsupportedOpError(f"Conv2d with padding={m.padding!r}, mode={m.padding_mode!r} is not supported")
    y = x.conv2d(s["weight"], stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
    return y + s["bias"].view(1, -1, 1, 1) if "bias" in s else y


def _layer_norm(m: nn.LayerNorm, s: Secrets, x):
    if len(m.normalized_shape) != 1:
        raise UnsupportedOpError("LayerNorm over more than the last dimension is not supported")
    return layer_norm_secure(x, s.get("weight"), s.get("bias"), eps=m.eps)


def _gelu(m: nn.GELU, s: Secrets, x):
    if m.approximate != "none":
        raise UnsupportedOpError(f"GELU(approximate={m.approximate!r}) is not supported; use the exact GELU")
    return gelu_tail_secure(x)


def _batch_norm_prepare(m: nn.BatchNorm2d) -> dict[str, torch.Tensor]:
    # Eval-mode BatchNorm is a per-channel affine map: the owner folds it in plaintext.
    scale = (m.running_var + m.eps).rsqrt()
    shift = -m.running_mean * scale
    if m.affine:
        scale, shift = scale * m.weight.detach(), shift * m.weight.detach() + m.bias.detach()
    return {"scale": scale, "shift": shift}


def _batch_norm(m: nn.BatchNorm2d, s: Secrets, x):
    return x * s["scale"].view(1, -1, 1, 1) + s["shift"].view(1, -1, 1, 1)


def _identity(m: nn.Module, s: Secrets, x, *args, **kwargs):
    return x


_MODULES: list[tuple[type[nn.Module], ModuleLowering]] = [
    (nn.Linear, ModuleLowering(_linear, _own_tensors)),
    (nn.Conv2d, ModuleLowering(_conv2d, _own_tensors)),
    (nn.LayerNorm, ModuleLowering(_layer_norm, _own_tensors)),
    (nn.BatchNorm2d, ModuleLowering(_batch_norm, _batch_norm_prepare)),
    (nn.GELU, ModuleLowering(_gelu)),
    (nn.ReLU, ModuleLowering(lambda m, s, x: x.relu())),
    (nn.Dropout, ModuleLowering(_identity)),
    (nn.Identity, ModuleLowering(_identity)),
]


def lowering_for(m: nn.Module) -> ModuleLowering:
    """The lowering of a leaf module (first matching type, subclasses included).

    Raises:
        UnsupportedOpError: no lowering handles ``type(m)``.
    """
    for cls, lowering in _MODULES:
        if isinstance(m, cls):
            return lowering
    raise UnsupportedOpError(f"no secure lowering for module type {type(m).__name__}")


def _softmax(x, dim: int = -1, *args, **kwargs):
    if dim not in (-1, x.dim() - 1):
        raise UnsupportedOpError(f"softmax over dim {dim}: only the last dimension is supported")
    return softmax_exact_secure(x)


def _cat(tensors, dim: int = 0):
    return crypten.cat(list(tensors), dim=dim)


def _layer_norm_fn(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    return layer_norm_secure(x, weight, bias, eps)


def _gelu_fn(x, approximate: str = "none"):
    return _gelu(nn.GELU(approximate), {}, x)


FUNCTIONS: dict[Any, Callable[..., Any]] = {
    torch.cat: _cat,
    torch.concat: _cat,
    torch.softmax: _softmax,
    F.softmax: _softmax,
    F.layer_norm: _layer_norm_fn,
    F.gelu: _gelu_fn,
    F.relu: lambda x, inplace=False: x.relu(),
    operator.matmul: lambda a, b: a.matmul(b),
}

METHODS: dict[str, Callable[..., Any]] = {
    "softmax": _softmax,
}
