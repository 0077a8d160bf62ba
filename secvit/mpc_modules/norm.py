"""MPCNorm: a normalisation by a norm-kind protocol."""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

import protocols

from protocols.norm import folded_batch_norm

from ..ops import own_tensors, register_module

__all__ = ["MPCNorm", "channels_last"]


class MPCNorm(nn.Module):
    """Normalisation by a ``norm``-kind protocol (replaces LayerNorm), over the last dim,
    or over dim 1 for timm's channels-first ``LayerNorm2d`` (``channels_first``).

    ``weight``/``bias`` start from the LayerNorm's affine (or none after folding).
    ``norm.batch`` also keeps running statistics (``running_mean``/``running_var``,
    updated in training mode), which the owner folds into the affine it shares
    (:meth:`inference_affine`); after folding into the next Linear layers they are gone
    and the module is the identity.
    """

    def __init__(self, norm: nn.LayerNorm, protocol: str, channels_first: bool = False):
        super().__init__()
        if protocols.get(protocol).kind != "norm":
            raise ValueError(f"{protocol} is not a norm protocol")
        self.protocol, self.eps, self.channels_first = protocol, norm.eps, channels_first
        self.weight = nn.Parameter(norm.weight.detach().clone()) if norm.weight is not None else None
        self.bias = nn.Parameter(norm.bias.detach().clone()) if norm.bias is not None else None
        channels = norm.normalized_shape[0]
        self.register_buffer("running_mean", torch.zeros(channels) if protocol == "norm.batch" else None)
        self.register_buffer("running_var", torch.ones(channels) if protocol == "norm.batch" else None)
        self.momentum = 0.1  # of the running statistics (norm.batch in training mode)

    def _normalise_last(self, x: torch.Tensor) -> torch.Tensor:
        stats = {} if self.running_mean is None else {
            "running_mean": self.running_mean, "running_var": self.running_var, "training": self.training,
            "momentum": self.momentum}
        return protocols.get(self.protocol).reference(x, self.weight, self.bias, eps=self.eps, **stats)

    def inference_affine(self) -> dict[str, torch.Tensor]:
        """The owner's secrets of the secure kernel: ``weight``/``bias`` as they are, or
        for ``norm.batch`` with its statistics the folded a, b."""
        if self.running_mean is None:
            return own_tensors(self)
        a, b = folded_batch_norm(self.weight, self.bias, self.running_mean, self.running_var, self.eps)
        return {"weight": a.detach(), "bias": b.detach()}

    def drop_affine(self) -> None:
        """Forget the affine (and statistics) after folding them elsewhere: the identity."""
        self.weight = self.bias = self.running_mean = self.running_var = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last(self._normalise_last, x) if self.channels_first else self._normalise_last(x)

    def extra_repr(self) -> str:
        return f"{self.protocol}, affine={self.weight is not None}, channels_first={self.channels_first}"


def channels_last(fn, x):
    """``fn`` over dim 1 of an NCHW tensor (plain or encrypted): permute to NHWC and back."""
    return fn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@register_module(MPCNorm, kind="norm", prepare=MPCNorm.inference_affine, protocol=lambda m: m.protocol,
                 stationary=("weight",))
def _secure_norm(m: MPCNorm, s: dict, x):
    norm = functools.partial(protocols.get(m.protocol).secure, weight=s.get("weight"), bias=s.get("bias"), eps=m.eps)
    return channels_last(norm, x) if m.channels_first else norm(x)
