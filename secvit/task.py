"""What a model predicts: a class (``classification``: logits, cross-entropy, accuracy) or a
scalar (``regression``: one output, the target standardised by its training mean and
std, an L1 or MSE loss, the mean absolute error reported in the target's unit).

A regression checkpoint records its :class:`RegressionTarget` in ``meta.json``
(``target``), so that every reader turns the model's output back into the unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .errors import UsageError

__all__ = ["REGRESSION_AGREEMENT", "REGRESSION_LOSSES", "RegressionTarget", "regression_loss", "score_key", "score_text"]

REGRESSION_LOSSES = ("l1", "mse")
REGRESSION_AGREEMENT = 0.01  # an MPC regression output agrees within 1% of the target's std (holo-sim: 0.27 µm)


@dataclass(frozen=True)
class RegressionTarget:
    """A scalar target's standardisation ``(y - mean) / std`` and its unit."""

    mean: float
    std: float
    unit: str

    @classmethod
    def fit(cls, y: torch.Tensor, unit: str) -> "RegressionTarget":
        """Mean and std of the training targets ``y``."""
        return cls(round(float(y.mean()), 6), round(max(float(y.std()), 1e-6), 6), unit)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """The model's ``(N, 1)`` output in the target's unit, ``(N,)``."""
        return output[..., 0] * self.std + self.mean

    def agrees(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Whether two predictions in the unit agree: within :data:`REGRESSION_AGREEMENT` stds
        (an MPC output against its plaintext reference)."""
        return (a - b).abs() <= REGRESSION_AGREEMENT * self.std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RegressionTarget":
        return cls(float(d["mean"]), float(d["std"]), str(d["unit"]))


def score_key(record: dict) -> tuple[str, str | None]:
    """Where a checkpoint's ``meta.json`` (or its extras) keeps its test score, and the
    score's unit: ``("test_mae", unit)`` when it records a regression target, else
    ``("test_accuracy", None)``."""
    return ("test_mae", record["target"]["unit"]) if "target" in record else ("test_accuracy", None)


def score_text(value: float, unit: str | None) -> str:
    """A test score as printed: ``test MAE 1.234 µm`` (regression) or ``test accuracy 0.9876``."""
    return f"test MAE {value:.3f} {unit}" if unit is not None else f"test accuracy {value:.4f}"


def regression_loss(name: str, output: torch.Tensor, y: torch.Tensor, target: RegressionTarget) -> torch.Tensor:
    """``name`` (l1 or mse) between the ``(N, 1)`` output and the standardised targets ``y``."""
    if name not in REGRESSION_LOSSES:
        raise UsageError(f"unknown regression loss {name!r}: expected one of {', '.join(REGRESSION_LOSSES)}")
    fn = F.l1_loss if name == "l1" else F.mse_loss
    return fn(output[..., 0], target.encode(y))
