"""``secvit inherit``: write a student checkpoint inherited from a teacher checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import Meta, load_model
from ..data import load_dataset
from ..models import create_model
from ..train import save_evaluated
from .inherit import inherit
from ..errors import UsageError

__all__ = ["inherit_checkpoint"]


def inherit_checkpoint(teacher_ckpt: str, out: str | Path, depth: int | None = None,
                       mlp_ratio: float | None = None, heads: int | None = None) -> dict[str, Any]:
    """Build the student (the teacher's model with ``depth`` / ``mlp_ratio`` / ``heads``
    overridden; fewer heads keep the teacher's head width), inherit its weights, save it
    with its test accuracy; returns ``meta.json``.

    Raises:
        ValueError: a rewritten teacher, or a student larger than the teacher.
    """
    teacher, meta = load_model(teacher_ckpt)
    if meta.extra.get("policy"):
        raise UsageError(f"{teacher_ckpt} is rewritten ({meta.extra['policy'].get('name')}); inherit from the "
                         "plain teacher, then fine-tune the student with --policy")
    overrides = {k: v for k, v in (("depth", depth), ("mlp_ratio", mlp_ratio)) if v is not None}
    if heads is not None:
        attn = teacher.blocks[0].attn
        overrides |= {"num_heads": heads, "head_dim": attn.head_dim}
    model_args = {**meta.model_args, **overrides}
    student = create_model(meta.model, **model_args).eval()
    picked = inherit(teacher, student)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    extra = {"inherited_from": str(teacher_ckpt), "inherited_layers": picked.layers, "inherited_heads": picked.heads}
    smeta = Meta(meta.model, model_args, meta.img_size, meta.in_chans, meta.num_classes, meta.normalization,
                 meta.data, extra)
    return save_evaluated(student, smeta, data, out)
