"""Plaintext-vs-MPC accuracy check of a (rewritten) model.

Accuracy on the checkpoint's test split of (a) the original model, (b) the rewritten
plaintext model (reference kernels), (c) the fixed-point emulation of the secure plan,
and (d) real MPC on the first ``mpc_n`` of those images; top-1 agreement and max logit
error of MPC against (b) and (c).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import build_model, load_model
from .data import load_dataset
from .rewrite import load_policy, rewrite
from .secure.emulation import emulate
from .session import run_session

__all__ = ["run_check"]


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def _original(model: torch.nn.Module, meta: Any) -> torch.nn.Module:
    """The checkpoint's weights in the un-rewritten architecture (exact ops)."""
    if not meta.extra.get("policy"):
        return model
    plain = build_model(type(meta)(**{**meta.__dict__, "extra": {}}))
    plain.load_state_dict(model.state_dict(), strict=False)  # folded affines stay at their init
    return plain.eval()


@torch.no_grad()
def run_check(checkpoint: str, policy: str | None = None, n: int = 200, mpc_n: int = 16, provider: str = "TFP",
              batch_size: int = 8, precision_bits: int = 16) -> dict[str, Any]:
    """Run the four-way comparison; returns the JSON report."""
    model, meta = load_model(checkpoint)
    reference = rewrite(model, load_policy(policy))[0] if policy else model
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    n, mpc_n = min(n, len(data.x_test)), min(mpc_n, n)
    x, y = meta.normalization.apply(data.x_test[:n]), data.y_test[:n]
    ref_logits = reference(x)
    emu_logits = emulate(reference, x, precision_bits)
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images.npy"
        np.save(images, data.x_test[:mpc_n].numpy())
        session = run_session(checkpoint, [str(images)], provider, batch_size, precision_bits, policy=policy)
    mpc = session.mpc
    return {
        "checkpoint": checkpoint,
        "policy": policy or (meta.extra.get("policy") or {}).get("name", "exact"),
        "images": n,
        "mpc_images": mpc_n,
        "accuracy": {"original": _accuracy(_original(model, meta)(x), y), "reference": _accuracy(ref_logits, y),
                     "emulation": _accuracy(emu_logits, y), "mpc": _accuracy(mpc, y[:mpc_n])},
        "agreement_mpc_vs_reference": _accuracy(mpc, ref_logits[:mpc_n].argmax(-1)),
        "agreement_mpc_vs_emulation": _accuracy(mpc, emu_logits[:mpc_n].argmax(-1)),
        "max_abs_logit_error_mpc_vs_reference": float((mpc - ref_logits[:mpc_n]).abs().max()),
        "max_abs_logit_error_mpc_vs_emulation": float((mpc - emu_logits[:mpc_n]).abs().max()),
        "seconds_per_image_mpc": session.per_party("seconds"),
        "bytes_per_image_mpc": session.per_party("bytes"),
        "rounds_per_image_mpc": session.per_party("rounds"),
    }
