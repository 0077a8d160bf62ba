"""``secvit compress --depth L``: a teacher checkpoint reparameterized to L blocks.

Groups the teacher's blocks into L branch blocks (:mod:`secvit.compress.reparam`), trains
them with lambda rising 0 -> 1 and (by default) KD from the teacher, merges, checks the
merged model against the lambda = 1 branch model, and writes a plain checkpoint of the
teacher's architecture at depth L (``model_args.depth``): every other command (rewrite,
train --policy, check, profile) takes it as it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import Meta, load_model
from ..data import load_dataset
from ..train import TrainConfig, fit, save_evaluated
from .reparam import branch_model, merge_model
from ..errors import UsageError

__all__ = ["MERGE_TOLERANCE", "compress_depth"]

MERGE_TOLERANCE = 1e-4
"""Largest |logit| difference allowed between the merged and the lambda = 1 branch model
(float32 rounding of sums of K branches; the test asserts 1e-5 on small models)."""


def compress_depth(teacher_ckpt: str, out: str | Path, depth: int, epochs: int = 20, lr: float = 5e-4,
                   ramp: float = 0.5, distill: str | None = "kd", temperature: float = 4.0,
                   seed: int = 0) -> dict[str, Any]:
    """Train, merge and save the depth-``depth`` model; returns its ``meta.json``
    (with ``merge_max_abs_error`` and the teacher block groups).

    Raises:
        ValueError: a rewritten teacher, a depth outside [1, teacher depth], or a merge
            that does not reproduce the trained model.
    """
    teacher, meta = load_model(teacher_ckpt)
    if meta.extra.get("policy"):
        raise UsageError(f"{teacher_ckpt} is rewritten ({meta.extra['policy'].get('name')}); reparameterize the "
                         "plain teacher, then fine-tune the result with --policy")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    model, groups = branch_model(teacher, depth, ramp)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    cfg = TrainConfig(model=meta.model, data=meta.data, epochs=epochs, lr=lr, seed=seed, warmup_epochs=min(1, epochs),
                      teacher=teacher_ckpt if distill else None, distill=distill, temperature=temperature)
    start = time.perf_counter()
    fit(model, data, meta.normalization, cfg)
    for block in model.blocks:
        block.schedule(1.0)
    merged = merge_model(model.eval())
    with torch.no_grad():
        x = meta.normalization.apply(data.x_test[:64])
        error = float((merged(x) - model(x)).abs().max())
    if error > MERGE_TOLERANCE:
        raise ValueError(f"merged model differs from the trained branch model by {error:.2e} (> {MERGE_TOLERANCE})")
    extra = {"reparameterized_from": str(teacher_ckpt), "branch_groups": groups, "merge_max_abs_error": error,
             "train_config": {**cfg.__dict__, "ramp": ramp}, "train_seconds": round(time.perf_counter() - start, 1)}
    smeta = Meta(meta.model, {**meta.model_args, "depth": depth}, meta.img_size, meta.in_chans, meta.num_classes,
                 meta.normalization, meta.data, extra)
    return save_evaluated(merged, smeta, data, out)
