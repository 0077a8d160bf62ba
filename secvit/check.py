"""Plaintext-vs-MPC accuracy check of a (rewritten) model.

Accuracy on the checkpoint's images (the test split by default) of (a) the original
model, (b) the rewritten plaintext model (reference kernels), (c) the fixed-point
emulation of the secure plan, and (d) real MPC on the first ``mpc_n`` of those images;
top-1 agreement and max logit error of MPC against (b) and (c); for a regression checkpoint
the mean absolute errors in the target's unit, and MPC's error against (b) and (c) in it
(agreement: within 1% of the target's std). The emulation also
measures what the truncations risk over all the images
(:func:`~secvit.truncation_risk.truncation_risk`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protocols.fixed_point import FixedPoint

from .augment import translate
from .checkpoint import META, apply_policy, build_model, load_model
from .data import load_dataset
from .errors import UsageError
from .secure.emulation import emulate
from .session import run_session
from .task import RegressionTarget
from .truncation_risk import truncation_risk

__all__ = ["SPLITS", "check_images", "check_recordable", "record_precision", "run_check"]

SPLITS = ("test", "train", "all", "augmented")
_SHIFT = 2  # the augmented split: every image translated by up to 2 pixels, as in training


def check_images(data: Any, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images and labels of ``split``: ``test``, ``train``, ``all`` (both),
    or ``augmented`` (all, then translated copies of all, by every offset in turn, as many
    as ``n`` needs: in-distribution images beyond the dataset's size).

    Raises:
        ValueError: unknown split, or a real split with fewer than ``n`` images.
    """
    if split not in SPLITS:
        raise UsageError(f"split must be one of {SPLITS}, got {split!r}")
    if split in ("test", "train"):
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    else:
        x, y = torch.cat([data.x_test, data.x_train]), torch.cat([data.y_test, data.y_train])
    if split == "augmented":
        side = 2 * _SHIFT + 1
        copies = [x] + [translate(x, [o % side] * len(x), [o // side] * len(x), _SHIFT)
                        for o in range(side * side) if o != side * side // 2][: max(0, -(-n // len(x)) - 1)]
        x, y = torch.cat(copies), y.repeat(len(copies))
    if n > len(x):
        raise UsageError(f"the {split} split has {len(x)} images; asked for {n} (try --split all or augmented)")
    return x[:n], y[:n]


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def _regression_scores(target: RegressionTarget, original: torch.Tensor, reference: torch.Tensor,
                       emulation: torch.Tensor, mpc: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """A regression checkpoint's figures in the target's unit: the mean absolute error of
    each model, and MPC's error against the reference and the emulation (mean and max);
    an MPC prediction agrees as :meth:`RegressionTarget.agrees` says."""
    decoded = {k: target.decode(v) for k, v in (("original", original), ("reference", reference),
                                                 ("emulation", emulation), ("mpc", mpc))}
    ours = decoded["mpc"]
    others = {k: decoded[k][:len(ours)] for k in ("reference", "emulation")}
    return {
        "task": "regression",
        "unit": target.unit,
        "mae": {k: float((v - y[:len(v)]).abs().mean()) for k, v in decoded.items()},
        **{f"error_mpc_vs_{k}": {"mean": float((ours - v).abs().mean()), "max": float((ours - v).abs().max())}
           for k, v in others.items()},
        **{f"agreement_mpc_vs_{k}": float(target.agrees(ours, v).float().mean()) for k, v in others.items()},
    }


def _original(model: torch.nn.Module, meta: Any) -> torch.nn.Module:
    """The checkpoint's weights in the un-rewritten architecture (exact ops)."""
    if not meta.extra.get("policy"):
        return model
    plain = build_model(type(meta)(**{**meta.__dict__, "extra": {}}))
    plain.load_state_dict(model.state_dict(), strict=False)  # folded affines stay at their init
    return plain.eval()


@torch.no_grad()
def run_check(checkpoint: str, policy: str | None = None, n: int = 200, mpc_n: int = 16, provider: str = "dealer",
              batch_size: int = 8, precision_bits: int | None = None, truncation: str = "exact",
              split: str = "test") -> dict[str, Any]:
    """Run the four-way comparison; returns the JSON report. ``precision_bits`` None takes
    the checkpoint's (:attr:`~secvit.checkpoint.Meta.precision_bits`).

    Raises:
        UsageError: ``split`` unknown or too small for ``n`` (before any party starts).
    """
    model, meta = load_model(checkpoint)
    precision_bits = meta.session_precision(precision_bits)
    reference = apply_policy(model, policy)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    mpc_n = min(mpc_n, n)
    raw, y = check_images(data, split, n)
    x = meta.normalization.apply(raw)
    ref_logits = reference(x)
    fp = FixedPoint(precision_bits)
    emu_logits = emulate(reference, x, fp=fp)
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images.npy"
        np.save(images, raw[:mpc_n].numpy())
        session = run_session(checkpoint, [str(images)], provider, batch_size, precision_bits, policy=policy,
                              truncation=truncation, risk=False)
    mpc = session.mpc
    original = _original(model, meta)(x)
    if "target" in meta.extra:
        scores = _regression_scores(RegressionTarget.from_dict(meta.extra["target"]), original, ref_logits, emu_logits,
                                    mpc, y)
    else:
        scores = {
            "accuracy": {"original": _accuracy(original, y), "reference": _accuracy(ref_logits, y),
                         "emulation": _accuracy(emu_logits, y), "mpc": _accuracy(mpc, y[:mpc_n])},
            "agreement_mpc_vs_reference": _accuracy(mpc, ref_logits[:mpc_n].argmax(-1)),
            "agreement_mpc_vs_emulation": _accuracy(mpc, emu_logits[:mpc_n].argmax(-1)),
        }
    return {
        "checkpoint": checkpoint,
        "split": split,
        "provider": provider,
        "insecure": session.summary()["insecure"],
        "policy": policy or (meta.extra.get("policy") or {}).get("name", "exact"),
        "images": n,
        "mpc_images": mpc_n,
        "precision_bits": precision_bits,
        **scores,
        "max_abs_logit_error_mpc_vs_reference": float((mpc - ref_logits[:mpc_n]).abs().max()),
        "max_abs_logit_error_mpc_vs_emulation": float((mpc - emu_logits[:mpc_n]).abs().max()),
        "seconds_per_image_mpc": session.per_party("seconds"),
        "bytes_per_image_mpc": session.per_party("bytes"),
        "batch_size": batch_size,
        "rounds_per_forward_mpc": session.rounds_per_forward,
        "truncation": {"elements_per_image_mpc": session.per_party("truncations", "elements"),
                       **truncation_risk(fp.stats, n, session.truncation)},
    }


def check_recordable(policy: str | None) -> None:
    """Refuse to record a precision measured under a ``--policy`` (another model than the checkpoint's).

    Raises:
        UsageError: ``policy`` is not None.
    """
    if policy is not None:
        raise UsageError("--record-precision records the checkpoint's own precision: run the check without --policy")


def record_precision(report: dict[str, Any], policy: str | None = None) -> int:
    """Record the precision a check ran at in its checkpoint's ``meta.json``
    (:attr:`~secvit.checkpoint.Meta.precision_bits`: every later session's default), when
    MPC agreed with the reference on every image of the checkpoint as it is (``policy``:
    the check's ``--policy``, which must be None); returns it.

    Raises:
        UsageError: the check ran under a policy, or MPC disagreed on an image.
    """
    check_recordable(policy)
    if report["agreement_mpc_vs_reference"] != 1.0:
        raise UsageError(f"not recorded: MPC agreed with the reference on {report['agreement_mpc_vs_reference']:.2%} "
                         f"of the images at {report['precision_bits']} bits, not all")
    path = Path(report["checkpoint"]) / META
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "precision_bits": report["precision_bits"]}, indent=2) + "\n")
    return report["precision_bits"]
