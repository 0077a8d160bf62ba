"""Fixed-point emulation of a secure plan, in plaintext.

The secure plan itself (the same graph, lowerings and protocol kernels) run on
:class:`~protocols.fixed_point.FixedPointTensor` secrets instead of CrypTensors: every
product truncated as the secure engine truncates it. It predicts what MPC computes (to a
few units in the last place per operation) on a whole test set in seconds, with no parties.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from protocols.fixed_point import FixedPoint

from .plan import SecurePlan

__all__ = ["emulate"]


@torch.no_grad()
def emulate(model: nn.Module, x: torch.Tensor, precision_bits: int = 16, fp: FixedPoint | None = None,
            chunk: int = 64) -> torch.Tensor:
    """Logits that MPC would compute for ``x``, predicted in plaintext (``fp``: the
    arithmetic to use, e.g. to read its truncation statistics afterwards), ``chunk``
    images at a time (float64 activations of thousands of images would not fit)."""
    fp = fp or FixedPoint(precision_bits)
    plan = SecurePlan(model.eval())
    plan.emulate_weights(fp)
    return torch.cat([plan(fp.tensor(part)).get_plain_text().float() for part in x.split(chunk)])
