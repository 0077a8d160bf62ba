"""Grouped-query attention by conversion (after the KDGQA paper's mean-pooling baseline;
Ainslie et al., "GQA", EMNLP 2023): keep Q; mean-pool the K and V projections of each
run of H / G consecutive heads into one K/V head; keep the output projection. The
grouping is fixed here, before any secure inference: a data-dependent grouping would
change shapes with the data and leak under MPC. Under MPC the qkv projection shrinks
from 3 H d to (H + 2 G) d outputs. Fine-tune briefly afterwards (``secvit train --init``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .mpc_modules import MPCAttention
from .errors import UsageError

__all__ = ["to_gqa"]


@torch.no_grad()
def _pool(rows: torch.Tensor, heads: int, groups: int, d: int) -> torch.Tensor:
    """(heads d, ...) -> (groups d, ...): the mean of each run of heads / groups heads."""
    return rows.reshape(groups, heads // groups, d, *rows.shape[1:]).mean(1).reshape(groups * d, *rows.shape[1:])


@torch.no_grad()
def _convert(attn: MPCAttention, groups: int) -> None:
    h, d = attn.num_heads, attn.head_dim
    old = attn.qkv
    qkv = nn.Linear(old.in_features, (h + 2 * groups) * d, bias=old.bias is not None)
    for tensor, source in ((qkv.weight, old.weight), (qkv.bias, old.bias)):
        if source is None:
            continue
        q, k, v = source[: h * d], source[h * d : 2 * h * d], source[2 * h * d :]
        tensor.copy_(torch.cat([q, _pool(k, h, groups, d), _pool(v, h, groups, d)]))
    attn.qkv, attn.kv_heads = qkv, groups


def to_gqa(model: nn.Module, groups: int) -> nn.Module:
    """Convert every :class:`MPCAttention` of ``model`` (a rewritten model) in place.

    Raises:
        ValueError: no MPCAttention, or ``groups`` does not divide a layer's head count.
    """
    attentions = [m for m in model.modules() if isinstance(m, MPCAttention)]
    if not attentions:
        raise UsageError("GQA converts MPCAttention modules: rewrite the model by a policy first")
    for attn in attentions:
        if groups < 1 or attn.num_heads % groups or attn.kv_heads != attn.num_heads:
            raise UsageError(f"cannot group {attn.num_heads} heads (kv_heads {attn.kv_heads}) into {groups}")
    for attn in attentions:
        _convert(attn, groups)
    return model
