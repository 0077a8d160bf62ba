"""How each traced node runs on CrypTensors.

A :class:`ModuleLowering` says which plaintext tensors of a leaf module are the model
owner's secrets (``prepare``, run by every party: on the client over ``meta`` tensors,
which yields shapes without values) and how the module runs on them (``forward``).
Function and method nodes that CrypTensors already implement (``reshape``, ``permute``,
``+``, ``@``, ``expand``, ...) run as they are; the tables below hold the rest.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d

import protocols
from protocols.backend import crypten

from ..mpc_modules import MPCActivation, MPCAttention, MPCNorm, channels_last, head_groups
from .regions import region

__all__ = ["FUNCTIONS", "METHODS", "PLAIN_GELU", "PLAIN_NORM", "PLAIN_SOFTMAX", "ModuleLowering", "lowering_for",
           "UnsupportedOpError"]

PLAIN_GELU, PLAIN_NORM, PLAIN_SOFTMAX = "gelu.exact", "norm.layer", "softmax.exact"
"""The protocols that plain (not rewritten) GELU, LayerNorm and softmax run as."""

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
    return _linear_of(s, "", x)


def _conv2d(m: nn.Conv2d, s: Secrets, x):
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UnsupportedOpError(f"Conv2d with padding={m.padding!r}, mode={m.padding_mode!r} is not supported")
    y = x.conv2d(s["weight"], stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
    return y + s["bias"].view(1, -1, 1, 1) if "bias" in s else y


def _layer_norm(m: nn.LayerNorm, s: Secrets, x):
    if len(m.normalized_shape) != 1:
        raise UnsupportedOpError("LayerNorm over more than the last dimension is not supported")
    norm = functools.partial(protocols.get(PLAIN_NORM).secure, weight=s.get("weight"), bias=s.get("bias"), eps=m.eps)
    return channels_last(norm, x) if isinstance(m, LayerNorm2d) else norm(x)


def _gelu(m: nn.GELU, s: Secrets, x):
    if m.approximate != "none":
        raise UnsupportedOpError(f"GELU(approximate={m.approximate!r}) is not supported; use the exact GELU")
    return protocols.get(PLAIN_GELU).secure(x)


def _attention_prepare(m: MPCAttention) -> dict[str, torch.Tensor]:
    secrets = {f"{sub}.{k}": v for sub in ("qkv", "proj", "pre_norm")
               for k, v in lowering_for(getattr(m, sub)).prepare(getattr(m, sub)).items()}
    bias = m.logit_bias()  # the owner gathers its position biases by the public index
    return secrets | ({"logit_bias": bias.detach()} if bias is not None else {})


def _linear_of(s: Secrets, prefix: str, x):
    """x W^T + b with the secrets ``{prefix}weight`` / ``{prefix}bias`` (prefix "" or "qkv.")."""
    y = x.matmul(s[f"{prefix}weight"].t())
    return y + s[f"{prefix}bias"] if f"{prefix}bias" in s else y


def _attention(m: MPCAttention, s: Secrets, x, attn_mask=None, is_causal: bool = False):
    if attn_mask is not None or is_causal:
        raise UnsupportedOpError("attention masks are not supported under MPC")
    b, n, _ = x.size()
    if not isinstance(m.pre_norm, nn.Identity):
        pre_norm = {k.removeprefix("pre_norm."): v for k, v in s.items() if k.startswith("pre_norm.")}
        with region("pre_norm", "norm", getattr(m.pre_norm, "protocol", PLAIN_NORM)):
            x = lowering_for(m.pre_norm).forward(m.pre_norm, pre_norm, x)
    with region("qkv", "linear"):
        q, k, v = m.split_heads(_linear_of(s, "qkv.", x), b, n)
    with region("q@k", "matmul"):
        logits = (q * m.scale).matmul(k.transpose(-2, -1))
    if "logit_bias" in s:
        logits = logits + s["logit_bias"]
    groups = head_groups(m.head_protocols)
    if len(groups) == 1:
        with region(m.head_protocols[0], "softmax", m.head_protocols[0]):
            attn = protocols.get(m.head_protocols[0]).secure(logits)
    else:  # one batched op per protocol, then the heads back in their order (public permutation)
        order = [h for heads in groups.values() for h in heads]
        parts = []
        for name, heads in groups.items():
            with region(name, "softmax", name):
                parts.append(protocols.get(name).secure(logits.index_select(1, torch.tensor(heads))))
        inverse = torch.argsort(torch.tensor(order))
        attn = crypten.cat(parts, dim=1).index_select(1, inverse)
    with region("attn@v", "matmul"):
        out = attn.matmul(v).transpose(1, 2).reshape(b, n, m.num_heads * m.head_dim)
    with region("proj", "linear"):
        return _linear_of(s, "proj.", out)


def _mpc_activation(m: MPCActivation, s: Secrets, x):
    return protocols.get(m.protocol).secure(x)


def _mpc_norm(m: MPCNorm, s: Secrets, x):
    norm = functools.partial(protocols.get(m.protocol).secure, weight=s.get("weight"), bias=s.get("bias"), eps=m.eps)
    return channels_last(norm, x) if m.channels_first else norm(x)


def _adaptive_avg_pool(m: nn.AdaptiveAvgPool2d, s: Secrets, x):
    if m.output_size not in (1, (1, 1)):
        raise UnsupportedOpError(f"AdaptiveAvgPool2d to {m.output_size}: only global pooling (1) is supported")
    return x.mean(3, keepdim=True).mean(2, keepdim=True)


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
    (MPCAttention, ModuleLowering(_attention, _attention_prepare)),
    (MPCActivation, ModuleLowering(_mpc_activation)),
    (MPCNorm, ModuleLowering(_mpc_norm, _own_tensors)),
    (nn.Linear, ModuleLowering(_linear, _own_tensors)),
    (nn.Conv2d, ModuleLowering(_conv2d, _own_tensors)),
    (nn.LayerNorm, ModuleLowering(_layer_norm, _own_tensors)),
    (nn.BatchNorm2d, ModuleLowering(_batch_norm, _batch_norm_prepare)),
    (nn.GELU, ModuleLowering(_gelu)),
    (nn.ReLU, ModuleLowering(lambda m, s, x: x.relu())),
    (nn.Dropout, ModuleLowering(_identity)),
    (nn.Identity, ModuleLowering(_identity)),
    (nn.AdaptiveAvgPool2d, ModuleLowering(_adaptive_avg_pool)),
    (nn.Flatten, ModuleLowering(lambda m, s, x: x.flatten(m.start_dim, m.end_dim))),
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
    return protocols.get(PLAIN_SOFTMAX).secure(x)


def _cat(tensors, dim: int = 0):
    return crypten.cat(list(tensors), dim=dim)


def _pad(x, pad, mode: str = "constant", value: float | None = None):
    if mode != "constant":
        raise UnsupportedOpError(f"padding mode {mode!r}: only constant padding is supported")
    return x.pad(pad, value=value or 0.0)


def _layer_norm_fn(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    return protocols.get(PLAIN_NORM).secure(x, weight, bias, eps=eps)


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
    F.pad: _pad,
}

METHODS: dict[str, Callable[..., Any]] = {
    "softmax": _softmax,
    "contiguous": lambda x: x,  # CrypTensors are always contiguous
}
