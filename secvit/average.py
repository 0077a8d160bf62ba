"""``secvit average``: one checkpoint whose weights are the uniform average of several.

Checkpoints of one architecture fine-tuned from a common ancestor (warm restarts of a cosine
schedule, a fine-tune with other options) usually lie in one basin of the loss, where the
average of their weights scores better than each of them: stochastic weight averaging
(Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI
2018) and uniform model soups (Wortsman et al., "Model soups", ICML 2022).

Formula: θ = (1/n) Σᵢ θᵢ over every floating-point parameter and buffer, in float32 (the
ingredients' float16 parameters are exact in float32). BatchNorm running statistics of a
``norm.batch`` policy are then re-estimated on the training images (an average of
statistics is not the statistics of the averaged weights: SWA's BatchNorm update). The
result has the ingredients' architecture, policy and grouping, so its secure plan, bytes
and rounds are theirs; its precision is not carried over (``secvit check
--record-precision`` measures it again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import Meta, load_model
from .data import load_dataset
from .errors import UsageError
from .task import score_key
from .train import recalibrate_batch_statistics, save_evaluated

__all__ = ["average_checkpoints"]

# what the ingredients must share: these meta.json fields, these extras, and the normalization
STRUCTURE = ("model", "model_args", "img_size", "in_chans", "num_classes", "data")
EXTRA_STRUCTURE = ("policy", "gqa", "target")


def _check_same(paths: list[str], metas: list[Meta]) -> None:
    """Raise UsageError naming the first field in which a checkpoint differs from the first."""
    first = metas[0]
    for path, meta in zip(paths[1:], metas[1:]):
        fields = [(f, getattr(first, f), getattr(meta, f)) for f in STRUCTURE]
        fields += [(f, first.extra.get(f), meta.extra.get(f)) for f in EXTRA_STRUCTURE]
        fields.append(("normalization", first.normalization.to_dict(), meta.normalization.to_dict()))
        for name, want, got in fields:
            if want != got:
                raise UsageError(f"{path}: {name} {got!r}, but {paths[0]} has {want!r}; average checkpoints of one "
                                 "architecture, policy and data")


def average_checkpoints(paths: list[str], out: str | Path, batch_size: int = 128) -> dict[str, Any]:
    """Write to ``out`` the checkpoint whose weights average those of ``paths``, with its
    test accuracy (MAE for regression) and the ingredients' (see the module docstring).

    Returns:
        The written ``meta.json`` contents (``averaged_from``: the ingredients and their scores).

    Raises:
        UsageError: fewer than two checkpoints, or checkpoints of another architecture,
            policy, grouping, target, data or normalization than the first.
    """
    if len(paths) < 2:
        raise UsageError(f"give two or more checkpoints to average (got {len(paths)})")
    loaded = [load_model(p) for p in paths]
    metas = [meta for _, meta in loaded]
    _check_same(paths, metas)
    states = [model.state_dict() for model, _ in loaded]
    model, first = loaded[0]
    model.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                           if v.is_floating_point() else v for k, v in states[0].items()})
    data = load_dataset(first.data, first.img_size, first.in_chans)
    recalibrate_batch_statistics(model, first.normalization.apply(data.x_train), batch_size)
    score, _ = score_key(first.extra)
    extra = {k: first.extra[k] for k in EXTRA_STRUCTURE if k in first.extra}
    extra["averaged_from"] = [{"checkpoint": str(p), score: m.extra.get(score)} for p, m in zip(paths, metas)]
    meta = Meta(first.model, first.model_args, first.img_size, first.in_chans, first.num_classes, first.normalization,
                first.data, extra)
    return save_evaluated(model.eval(), meta, data, out)
