"""MPCNorm: a normalisation by a norm-kind protocol."""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

import protocols

from ..ops import own_tensors, register_module

__all__ = ["MPCNorm", "channels_last"]


class MPCNorm(nn.Module):
    """Normalisation by a ``norm``-kind protocol (replaces LayerNorm), over the last dim,
    or over dim 1 for timm's channels-first ``LayerNorm2d`` (``channels_first``).

    ``weight``/``bias`` start from the LayerNorm's affine (or none after folding).
    """

    def __init__(self, norm: nn.LayerNorm, protocol: str, channels_first: bool = False):
        super().__init__()
        if protocols.get(protocol).kind != "norm":
            raise ValueError(f"{protocol} is not a norm protocol")
        self.protocol, self.eps, self.channels_first = protocol, norm.eps, channels_first
        self.weight = nn.Parameter(norm.weight.detach().clone()) if norm.weight is not None else None
        self.bias = nn.Parameter(norm.bias.detach().clone()) if norm.bias is not None else None

    def _normalise_last(self, x: torch.Tensor) -> torch.Tensor:
        return protocols.get(self.protocol).reference(x, self.weight, self.bias, eps=self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last(self._normalise_last, x) if self.channels_first else self._normalise_last(x)

    def extra_repr(self) -> str:
        return f"{self.protocol}, affine={self.weight is not None}, channels_first={self.channels_first}"


def channels_last(fn, x):
    """``fn`` over dim 1 of an NCHW tensor (plain or encrypted): permute to NHWC and back."""
    return fn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@register_module(MPCNorm, kind="norm", prepare=own_tensors, protocol=lambda m: m.protocol)
def _secure_norm(m: MPCNorm, s: dict, x):
    norm = functools.partial(protocols.get(m.protocol).secure, weight=s.get("weight"), bias=s.get("bias"), eps=m.eps)
    return channels_last(norm, x) if m.channels_first else norm(x)
