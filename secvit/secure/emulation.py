"""Fixed-point emulation of a secure plan, in plaintext.

The same traced graph as :class:`~secvit.secure.plan.SecurePlan`, run on float64
tensors held on CrypTen's fixed-point grid: every product truncated as CrypTen truncates
it, every protocol by its emulation kernel. It predicts what MPC computes (to a few
units in the last place per operation) on a whole test set in seconds, with no parties.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

import protocols
from protocols.fixed_point import FixedPoint

from ..mpc_modules import MPCActivation, MPCAttention, MPCNorm, head_groups
from .lowering import UnsupportedOpError
from .tracing import trace

__all__ = ["emulate"]


def _linear(fp: FixedPoint, x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    y = fp._truncate(x @ fp.encode(lin.weight.detach()).t())
    return y + fp.encode(lin.bias.detach()) if lin.bias is not None else y


def _attention(fp: FixedPoint, m: MPCAttention, x: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    qkv = _linear(fp, x, m.qkv).reshape(b, n, 3, m.num_heads, m.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = fp._truncate(fp.mul_public(q, m.scale) @ k.transpose(-2, -1))
    attn = torch.empty_like(logits)
    for name, heads in head_groups(m.head_protocols).items():
        attn[:, heads] = protocols.get(name).emulate(logits[:, heads], fp)
    out = fp._truncate(attn @ v).transpose(1, 2).reshape(b, n, m.num_heads * m.head_dim)
    return _linear(fp, out, m.proj)


def _module(fp: FixedPoint, m: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if isinstance(m, nn.Linear):
        return _linear(fp, x, m)
    if isinstance(m, nn.Conv2d):
        y = fp._truncate(F.conv2d(x, fp.encode(m.weight.detach()), None, m.stride, m.padding, m.dilation, m.groups))
        return y + fp.encode(m.bias.detach()).view(1, -1, 1, 1) if m.bias is not None else y
    if isinstance(m, MPCAttention):
        return _attention(fp, m, x)
    if isinstance(m, MPCActivation):
        return protocols.get(m.protocol).emulate(x, fp)
    if isinstance(m, nn.GELU):
        return protocols.get("gelu.exact").emulate(x, fp)
    if isinstance(m, MPCNorm):
        p = protocols.get(m.protocol)
        return p.emulate(x, fp, m.weight.detach() if m.weight is not None else None,
                         m.bias.detach() if m.bias is not None else None, eps=m.eps)
    if isinstance(m, nn.LayerNorm):
        return protocols.get("norm.layer").emulate(x, fp, m.weight.detach(), m.bias.detach(), eps=m.eps)
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return x
    if isinstance(m, nn.ReLU):
        return fp.relu(x)
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
            return protocols.get("softmax.exact").emulate(a, self.fp)
        return super().call_function(target, args, kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target == "softmax":
            return protocols.get("softmax.exact").emulate(args[0], self.fp)
        return super().call_method(target, args, kwargs)


@torch.no_grad()
def emulate(model: nn.Module, x: torch.Tensor, precision_bits: int = 16) -> torch.Tensor:
    """Logits that MPC would compute for ``x``, predicted in plaintext."""
    fp = FixedPoint(precision_bits)
    return _Emulator(trace(model.eval()), fp).run(fp.encode(x)).float()
