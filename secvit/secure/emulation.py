"""Fixed-point emulation of a secure plan, in plaintext.

The same traced graph as :class:`~secvit.secure.plan.SecurePlan`, run on float64
tensors held on CrypTen's fixed-point grid: every product truncated as CrypTen truncates
it, every protocol by its emulation kernel. It predicts what MPC computes (to a few
units in the last place per operation) on a whole test set in seconds, with no parties.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d

import protocols
from protocols.fixed_point import FixedPoint

from ..mpc_modules import MPCActivation, MPCAttention, MPCNorm, channels_last, head_groups
from .lowering import PLAIN_GELU, PLAIN_NORM, PLAIN_SOFTMAX, UnsupportedOpError, lowering_for
from ..tracing import SHAPE_SPECIALISED, trace, trace_at

__all__ = ["emulate"]


def _linear(fp: FixedPoint, x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    y = fp._truncate(x @ fp.encode(lin.weight.detach()).t())
    return y + fp.encode(lin.bias.detach()) if lin.bias is not None else y


def _attention(fp: FixedPoint, m: MPCAttention, x: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    q, k, v = m.split_heads(_linear(fp, _module(fp, m.pre_norm, x), m.qkv), b, n)
    logits = fp._truncate(fp.mul_public(q, m.scale) @ k.transpose(-2, -1))
    bias = m.logit_bias()
    if bias is not None:
        logits = logits + fp.encode(bias.detach())
    attn = torch.empty_like(logits)
    for name, heads in head_groups(m.head_protocols).items():
        attn[:, heads] = protocols.get(name).emulate(logits[:, heads], fp)
    out = fp._truncate(attn @ v).transpose(1, 2).reshape(b, n, m.num_heads * m.head_dim)
    return _linear(fp, out, m.proj)


def _norm(fp: FixedPoint, name: str, m: nn.Module, x: torch.Tensor, channels_first: bool) -> torch.Tensor:
    weight = m.weight.detach() if m.weight is not None else None
    bias = m.bias.detach() if m.bias is not None else None
    norm = functools.partial(protocols.get(name).emulate, fp=fp, weight=weight, bias=bias, eps=m.eps)
    return channels_last(norm, x) if channels_first else norm(x)


def _module(fp: FixedPoint, m: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if isinstance(m, SHAPE_SPECIALISED):
        return _Emulator(trace_at(m, x.shape), fp).run(x)
    if isinstance(m, nn.Linear):
        return _linear(fp, x, m)
    if isinstance(m, nn.Conv2d):
        y = fp._truncate(F.conv2d(x, fp.encode(m.weight.detach()), None, m.stride, m.padding, m.dilation, m.groups))
        return y + fp.encode(m.bias.detach()).view(1, -1, 1, 1) if m.bias is not None else y
    if isinstance(m, nn.BatchNorm2d):
        scale, shift = (fp.encode(t).view(1, -1, 1, 1) for t in lowering_for(m).prepare(m).values())
        return fp.mul(x, scale) + shift
    if isinstance(m, MPCAttention):
        return _attention(fp, m, x)
    if isinstance(m, MPCActivation):
        return protocols.get(m.protocol).emulate(x, fp)
    if isinstance(m, nn.GELU):
        return protocols.get(PLAIN_GELU).emulate(x, fp)
    if isinstance(m, MPCNorm):
        return _norm(fp, m.protocol, m, x, m.channels_first)
    if isinstance(m, nn.LayerNorm):
        return _norm(fp, PLAIN_NORM, m, x, isinstance(m, LayerNorm2d))
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return x
    if isinstance(m, nn.ReLU):
        return fp.relu(x)
    if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
        return fp.mean(fp.mean(x, 3), 2)
    if isinstance(m, nn.Flatten):
        return x.flatten(m.start_dim, m.end_dim)
    raise UnsupportedOpError(f"no emulation for module type {type(m).__name__}")


class _Emulator(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, fp: FixedPoint):
        super().__init__(gm, garbage_collect_values=True)
        self.fp = fp

    def get_attr(self, target: str, args: tuple, kwargs: dict) -> Any:
        value = super().get_attr(target, args, kwargs)
        return self.fp.encode(value.detach()) if torch.is_floating_point(value) else value

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        return _module(self.fp, self.fetch_attr(target), *args, **kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        a = args[0] if args else None
        if target in (operator.mul, torch.mul) and torch.is_tensor(a) and torch.is_tensor(args[1]):
            return self.fp.mul(a, args[1])
        if target in (operator.mul, torch.mul) and torch.is_tensor(a):
            return self.fp.mul_public(a, args[1])
        if target in (operator.matmul, torch.matmul):
            return self.fp._truncate(a @ args[1])
        if target in (torch.softmax, F.softmax):
            return protocols.get(PLAIN_SOFTMAX).emulate(a, self.fp)
        return super().call_function(target, args, kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target == "softmax":
            return protocols.get(PLAIN_SOFTMAX).emulate(args[0], self.fp)
        return super().call_method(target, args, kwargs)


@torch.no_grad()
def emulate(model: nn.Module, x: torch.Tensor, precision_bits: int = 16, fp: FixedPoint | None = None,
            chunk: int = 64) -> torch.Tensor:
    """Logits that MPC would compute for ``x``, predicted in plaintext (``fp``: the
    arithmetic to use, e.g. to read its truncation statistics afterwards), ``chunk``
    images at a time (float64 activations of thousands of images would not fit)."""
    fp = fp or FixedPoint(precision_bits)
    emulator = _Emulator(trace(model.eval()), fp)
    return torch.cat([emulator.run(fp.encode(part)).float() for part in x.split(chunk)])
