"""``secvit quantize``: a plain checkpoint quantized after training, measured with and
without its activation quantizers, written as a checkpoint every command takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_model
from ..data import load_dataset
from ..errors import UsageError
from ..train import evaluate, save_evaluated
from .ptq import METHODS, SECURE_DROPPED, SECURE_KEPT, fake_quantized, quantized_copy

__all__ = ["quantize_checkpoint"]


def quantize_checkpoint(checkpoint: str, w_bits: int, a_bits: int, method: str, out: str | Path | None = None,
                        calib: int = 64, tune_steps: int = 20, seed: int = 0) -> dict[str, Any]:
    """Quantize ``checkpoint`` by ``method`` with ``calib`` training images; measure the
    test accuracy of the float model, of the fully quantized one (weights and activations,
    plaintext) and of the weights-only one (what MPC runs); write it to ``out`` if given.

    Raises:
        UsageError: a rewritten checkpoint or another architecture than ViT's blocks, an
            unknown method, or bit widths out of [2, 16].
    """
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; known: {', '.join(METHODS)}")
    if not (2 <= w_bits <= 16 and 2 <= a_bits <= 16):
        raise UsageError(f"--w-bits {w_bits} / --a-bits {a_bits}: expected 2 to 16 bits")
    model, meta = load_model(checkpoint)
    if meta.extra.get("policy"):
        raise UsageError(f"{checkpoint} is rewritten ({meta.extra['policy'].get('name')}): quantize the plain model")
    if not all(hasattr(b, "norm1") and hasattr(b, "norm2") and hasattr(b.attn, "qkv") and hasattr(b.attn, "attn_drop")
               and hasattr(b.mlp, "fc1") for b in getattr(model, "blocks", [None])):
        raise UsageError(f"{checkpoint} ({meta.model}): secvit quantize takes ViT/DeiT-style models (blocks with "
                         "norm1, attn.qkv, norm2 and mlp.fc1)")
    torch.manual_seed(seed)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))[:calib]
    x_calib = meta.normalization.apply(data.x_train[pick])
    x_test = meta.normalization.apply(data.x_test)
    quantized = quantized_copy(model, x_calib, w_bits, a_bits, method, tune_steps)
    with fake_quantized(quantized, x_calib, a_bits, method):
        full = evaluate(quantized, x_test, data.y_test)
    report = {"checkpoint": checkpoint, "data": meta.data, "method": method, "w_bits": w_bits, "a_bits": a_bits,
              "calibration_images": calib, "test_images": len(x_test),
              "accuracy": {"float": evaluate(model, x_test, data.y_test), "quantized": full,
                           "weights_only": evaluate(quantized, x_test, data.y_test)},
              "secure_engine": {"kept": SECURE_KEPT, "dropped": SECURE_DROPPED}}
    if out is not None:
        meta.extra = {k: v for k, v in meta.extra.items() if k not in ("train_config", "train_seconds")}
        meta.extra["quantization"] = {k: report[k] for k in ("method", "w_bits", "a_bits", "calibration_images",
                                                             "accuracy", "secure_engine")} | {"from": checkpoint}
        save_evaluated(quantized, meta, data, out, dtype=torch.float32)  # float16 would move weights off the grid
    return report
