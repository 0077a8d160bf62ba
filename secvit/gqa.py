"""Grouped-query attention by conversion (after the KDGQA paper's mean-pooling baseline;
Ainslie et al., "GQA", EMNLP 2023): keep Q; mean-pool the K and V projections of each
run of H / G consecutive heads into one K/V head; keep the output projection. Under MPC
the qkv projection shrinks from 3 H d to (H + 2 G) d outputs. Fine-tune afterwards
(``secvit train --init ... --gqa G --gqa-mode M``).

Which K/V head each query head reads is the mode's (:mod:`secvit.query_grouping`):
``mean`` and ``pgqa`` keep H / G consecutive heads per group, ``dgqa`` re-allocates them
during training from the keys' norms and fixes the allocation at the end, ``kdgqa``
allocates at every forward pass. Only the first three run under MPC: a data-dependent
allocation would change shapes with the data and leak, and the secure plan refuses it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import UsageError
from .mpc_modules import MPCAttention
from .query_grouping import GQA_MODES, QueryGrouping

__all__ = ["GQA_MODES", "gqa_from_record", "gqa_record", "to_gqa"]


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


def _attentions(model: nn.Module) -> list[MPCAttention]:
    return [m for m in model.modules() if isinstance(m, MPCAttention)]


def to_gqa(model: nn.Module, groups: int, mode: str = "mean", assignments: list[list[int]] | None = None,
           **options) -> nn.Module:
    """Convert every :class:`MPCAttention` of ``model`` (a rewritten model) in place.

    Args:
        model: A rewritten model.
        groups: K/V heads per layer.
        mode: One of :data:`GQA_MODES`.
        assignments: Each layer's trained group per query head (a ``dgqa`` checkpoint).
        options: :class:`QueryGrouping`'s ``momentum``, ``interval`` or ``sigma``.

    Raises:
        UsageError: no MPCAttention, a head count ``groups`` does not divide, an unknown
            mode, or assignments that do not fit.
    """
    attentions = _attentions(model)
    if not attentions:
        raise UsageError("GQA converts MPCAttention modules: rewrite the model by a policy first")
    if mode not in GQA_MODES:
        raise UsageError(f"unknown --gqa-mode {mode!r}; known: {', '.join(GQA_MODES)}")
    for attn in attentions:
        if groups < 1 or attn.num_heads % groups or attn.kv_heads != attn.num_heads:
            raise UsageError(f"cannot group {attn.num_heads} heads (kv_heads {attn.kv_heads}) into {groups}")
    if assignments is not None and len(assignments) != len(attentions):
        raise UsageError(f"{len(assignments)} GQA assignments for {len(attentions)} attention layers")
    for i, attn in enumerate(attentions):
        _convert(attn, groups)
        try:
            attn.grouping = QueryGrouping(mode, attn.num_heads, groups, assignments[i] if assignments else None,
                                          **options)
        except ValueError as e:
            raise UsageError(f"attention layer {i}: {e}") from None
    return model


def gqa_record(model: nn.Module) -> int | dict | None:
    """What a checkpoint's ``meta.json`` keeps of the grouping (``extra["gqa"]``): the
    group count for ``mean``; otherwise the mode and each layer's assignment; None for
    a model without grouped attention."""
    groupings = [attn.grouping for attn in _attentions(model) if attn.grouping is not None]
    if not groupings:
        return None
    if groupings[0].mode == "mean":
        return groupings[0].groups
    return {"groups": groupings[0].groups, "mode": groupings[0].mode,
            "assignments": [g.assignment for g in groupings]}


def gqa_from_record(model: nn.Module, record: int | dict) -> nn.Module:
    """:func:`to_gqa` as ``record`` (:func:`gqa_record`) says."""
    if isinstance(record, int):
        return to_gqa(model, record)
    return to_gqa(model, int(record["groups"]), record["mode"], record.get("assignments"))
