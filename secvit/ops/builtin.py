"""torch's and timm's modules, functions and methods in the op table.

The secure forms below run on CrypTensors under MPC and on fixed-point tensors in
emulation alike. Plain GELU, LayerNorm, softmax and timm's attentions have none: the
secure plan rewrites them into secvit's MPC modules (the ``exact`` policy) first.
"""

from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.tiny_vit import Attention as TinyVitAttention
from timm.models.tiny_vit import TinyVitBlock

from protocols.fixed_point import cat, contiguous, stack
from protocols.norm import folded_batch_norm

from .table import UnsupportedOpError, own_tensors, register_function, register_method, register_module

__all__ = ["linear_of", "linear_secrets"]

_REWRITTEN = "runs under MPC only as {}; the secure plan rewrites it with the exact policy first"
_LAST_DIM_SOFTMAX = "is rewritten to MPCSoftmax over the last dimension only; over another one it is not supported"


def _identity(m: nn.Module, s: dict, x, *args, **kwargs):
    return x


def linear_secrets(m: nn.Linear) -> dict[str, torch.Tensor]:
    """A Linear's secrets as its product uses them: ``weight_t`` (W^T, the right operand
    of x W^T, masked once at load) and ``bias``."""
    secrets = {"weight_t": m.weight.detach().t()}
    return secrets | ({"bias": m.bias.detach()} if m.bias is not None else {})


def linear_of(s: dict, prefix: str, x):
    """x W^T + b with the secrets ``{prefix}weight_t`` / ``{prefix}bias`` (:func:`linear_secrets`)."""
    y = x.matmul(s[f"{prefix}weight_t"])
    return y + s[f"{prefix}bias"] if f"{prefix}bias" in s else y


@register_module(nn.Linear, kind="linear", prepare=linear_secrets, stationary=("weight_t",))
def _linear(m: nn.Linear, s: dict, x):
    return linear_of(s, "", x)


@register_module(nn.Conv2d, kind="linear", prepare=own_tensors, stationary=("weight",))
def _conv2d(m: nn.Conv2d, s: dict, x):
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UnsupportedOpError(f"Conv2d with padding={m.padding!r}, mode={m.padding_mode!r} is not supported")
    y = x.conv2d(s["weight"], stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
    return y + s["bias"].view(1, -1, 1, 1) if "bias" in s else y


def _batch_norm_prepare(m: nn.BatchNorm2d) -> dict[str, torch.Tensor]:
    # Eval-mode BatchNorm is a per-channel affine map: the owner folds it in plaintext.
    scale, shift = folded_batch_norm(m.weight, m.bias, m.running_mean, m.running_var, m.eps)
    return {"scale": scale.detach(), "shift": shift.detach()}


@register_module(nn.BatchNorm1d, nn.BatchNorm2d, kind="norm", prepare=_batch_norm_prepare)
def _batch_norm(m: nn.BatchNorm1d | nn.BatchNorm2d, s: dict, x):
    channels = (1, -1) + (1,) * (len(x.shape) - 2)  # over dim 1: (N, C), (N, C, L) or (N, C, H, W)
    return x * s["scale"].view(channels) + s["shift"].view(channels)


@register_module(nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool(m: nn.AdaptiveAvgPool2d, s: dict, x):
    if m.output_size not in (1, (1, 1)):
        raise UnsupportedOpError(f"AdaptiveAvgPool2d to {m.output_size}: only global pooling (1) is supported")
    return x.mean(3, keepdim=True).mean(2, keepdim=True)


register_module(nn.ReLU, kind="activation", secure=lambda m, s, x: x.relu())
register_module(nn.Dropout, nn.Identity, secure=_identity)
register_module(nn.Flatten, secure=lambda m, s, x: x.flatten(m.start_dim, m.end_dim))
register_module(nn.GELU, nn.SiLU, nn.Hardswish, kind="activation", refused=_REWRITTEN.format("MPCActivation"))
register_module(nn.LayerNorm, kind="norm", refused=_REWRITTEN.format("MPCNorm") + " (over the last dimension only)")
register_module(nn.Softmax, kind="softmax", refused=_LAST_DIM_SOFTMAX)
register_module(Attention, TinyVitAttention, kind="attention", refused=_REWRITTEN.format("MPCAttention"))
register_module(TinyVitBlock, secure=None, per_shape=True)  # pads and partitions windows by shape


def _pad(x, pad, mode: str = "constant", value: float | None = None):
    if mode != "constant":
        raise UnsupportedOpError(f"padding mode {mode!r}: only constant padding is supported")
    return x.pad(pad, value=value or 0.0)


def _narrow(x, dim: int, start: int, stop: int):
    """``x``'s slice ``start:stop`` along ``dim`` (a secret's indexing, any dim)."""
    return x[(slice(None),) * (dim % len(x.shape)) + (slice(start, stop),)]


def _roll(x, shifts, dims=None):
    """torch.roll along ``dims`` (Swin's shifted windows): a public permutation, two slices
    concatenated per dimension."""
    if dims is None:
        raise UnsupportedOpError("torch.roll without dims (over the flattened tensor) is not supported")
    shifts, dims = (shifts, dims) if isinstance(dims, (tuple, list)) else ((shifts,), (dims,))
    for shift, dim in zip(shifts, dims):
        n = x.shape[dim]
        cut = (n - shift % n) % n
        if cut:
            x = cat([_narrow(x, dim, cut, n), _narrow(x, dim, 0, cut)], dim=dim)
    return x


def _getattr(obj, name: str, *default):
    """``getattr``, where a secret's ``dtype`` is the float32 it decodes to (EVA-02's rotary
    embedding casts back to its input's dtype)."""
    if name == "dtype" and not torch.is_tensor(obj) and hasattr(obj, "get_plain_text"):
        return torch.float32
    return getattr(obj, name, *default)


def _same_dtype(x, *args, **kwargs):
    """``to``/``type_as`` on a secret: only to a floating dtype (or the CPU), where it is
    itself (fixed point stands for float32)."""
    targets = [a for a in (*args, *kwargs.values()) if a is not None and not isinstance(a, bool)]
    for t in targets:
        if isinstance(t, torch.dtype) and not t.is_floating_point or isinstance(t, (str, torch.device)) and \
                torch.device(t).type != "cpu":
            raise UnsupportedOpError(f"a secret cannot be cast to {t}")
    return x


def _chunk(x, chunks: int, dim: int = 0):
    """``chunk`` as torch cuts it (EVA-02's SwiGLU halves): slices of ceil(n / chunks)."""
    n = x.shape[dim]
    step = -(-n // chunks)
    return tuple(_narrow(x, dim, i, min(n, i + step)) for i in range(0, n, step))


register_function(getattr, secure=_getattr)
register_method("chunk", secure=_chunk)
register_function(torch.chunk, secure=_chunk)
register_method("to", "type_as", secure=_same_dtype)
register_function(torch.cat, torch.concat, secure=lambda tensors, dim=0: cat(tensors, dim=dim))
register_function(torch.stack, secure=lambda tensors, dim=0: stack(tensors, dim=dim))  # EVA-02's rotary halves
register_function(torch.roll, secure=_roll)
register_function(F.relu, kind="activation", secure=lambda x, inplace=False: x.relu())
register_function(operator.matmul, torch.matmul, kind="matmul", secure=lambda a, b: a.matmul(b))
register_function(F.pad, secure=_pad)
register_function(torch.softmax, F.softmax, kind="softmax", refused=_LAST_DIM_SOFTMAX)
register_function(F.gelu, kind="activation", refused=_REWRITTEN.format("MPCActivation"))
register_function(F.layer_norm, kind="norm", refused="is not supported under MPC; use nn.LayerNorm (which is rewritten)")
register_method("softmax", kind="softmax", refused=_LAST_DIM_SOFTMAX)
register_method("matmul", "bmm", kind="matmul", secure=None)
register_method("contiguous", secure=contiguous)
register_method("reshape_as", secure=lambda x, other: x.reshape(other.shape))  # LeViT's LinearNorm
register_function(F.linear, kind="linear", secure=lambda x, weight, bias=None: linear_of(
    {"weight_t": weight.t()} | ({} if bias is None else {"bias": bias}), "", x))  # BEiT's qkv (q/v bias concatenated)
