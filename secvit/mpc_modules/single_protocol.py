"""MPC modules that run one registry protocol on their input: :class:`MPCActivation`
(replaces GELU) and :class:`MPCSoftmax` (replaces a softmax over the last dimension
outside an attention: a call to ``softmax`` or an ``nn.Softmax``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

import protocols

from ..ops import register_module

__all__ = ["MPCActivation", "MPCSoftmax"]


class _SingleProtocol(nn.Module):
    """Runs protocol ``protocol`` of kind :attr:`KIND`: its reference kernel in plaintext,
    its secure kernel under MPC."""

    KIND = ""

    def __init__(self, protocol: str):
        super().__init__()
        if protocols.get(protocol).kind != self.KIND:
            raise ValueError(f"{protocol} is not {'an' if self.KIND[0] in 'aeiou' else 'a'} {self.KIND} protocol")
        self.protocol = protocol

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return protocols.get(self.protocol).reference(x)

    def extra_repr(self) -> str:
        return self.protocol


class MPCActivation(_SingleProtocol):
    """Elementwise activation by an ``activation``-kind protocol (replaces GELU)."""

    KIND = "activation"


class MPCSoftmax(_SingleProtocol):
    """Softmax over the last dimension by a ``softmax``-kind protocol."""

    KIND = "softmax"


def _secure(m: _SingleProtocol, secrets: dict, x: Any) -> Any:
    return protocols.get(m.protocol).secure(x)


for _cls in (MPCActivation, MPCSoftmax):
    register_module(_cls, kind=_cls.KIND, protocol=lambda m: m.protocol, secure=_secure)
