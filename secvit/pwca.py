"""Pair-wise cross-attention (PWCA) of DCAL (Zhu et al., "Dual Cross-Attention Learning for
Fine-Grained Visual Categorization and Object Re-Identification", CVPR 2022), a training-
only regularizer.

A second forward pass of the training batch in which every attention layer lets each
image's queries attend over its own keys and values and those of a partner image from
the same batch (``partner``: a permutation), concatenated along the tokens:
``softmax(q [k; k_p]^T scale) [v; v_p]``, with the layer's own weights and softmax
protocol (the partner's keys and values come from its hidden state at that layer in the
same pass). The pass is scored with the first image's labels and its cross-entropy is
added to the loss (equal weights). Inference never runs it: the trained model, its secure
plan and its cost are those of the same architecture trained without PWCA.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Attention

import protocols

from .errors import UsageError
from .mpc_modules import MPCAttention, head_groups

__all__ = ["pwca_logits"]


def _mpc_attention(m: MPCAttention, x: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    q, k, v = m.split_heads(m.qkv(m.pre_norm(x)), b, n)
    k, v = torch.cat([k, k[partner]], 2), torch.cat([v, v[partner]], 2)
    logits = (q * m.scale) @ k.transpose(-2, -1)
    attn = torch.empty_like(logits)
    for name, heads in head_groups(m.head_protocols).items():
        attn[:, heads] = protocols.get(name).reference(logits[:, heads])
    return m.output(attn, v)


def _timm_attention(m: Attention, x: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    q, k, v = m.qkv(x).reshape(b, n, 3, m.num_heads, m.head_dim).permute(2, 0, 3, 1, 4)
    q, k = m.q_norm(q), m.k_norm(k)
    k, v = torch.cat([k, k[partner]], 2), torch.cat([v, v[partner]], 2)
    attn = F.softmax((q * m.scale) @ k.transpose(-2, -1), -1)
    return m.proj(m.norm((attn @ v).transpose(1, 2).reshape(b, n, m.attn_dim)))


@contextmanager
def _cross_attending(model: nn.Module, partner: torch.Tensor) -> Iterator[None]:
    """Every attention of ``model`` attends over its partner's tokens too, inside the block."""
    swapped = []
    for m in model.modules():
        if isinstance(m, MPCAttention):
            if m.attention_biases is not None:
                raise UsageError("--pwca needs attention without position biases (TinyViT's are per token pair)")
            forward = _mpc_attention
        elif isinstance(m, Attention):
            forward = _timm_attention
        else:
            continue
        m.forward = lambda x, *args, _m=m, _f=forward, **kwargs: _f(_m, x, partner)
        swapped.append(m)
    if not swapped:
        raise UsageError("--pwca needs a ViT with timm or MPC attention layers")
    try:
        yield
    finally:
        for m in swapped:
            del m.forward


def pwca_logits(model: nn.Module, x: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """The logits of ``model`` on ``x`` with pair-wise cross-attention, image i's partner
    being image ``partner[i]``."""
    with _cross_attending(model, partner):
        return model(x)
