"""Cascaded feature drift compensation and the nearest-class-mean classifier of exemplar-free
continual learning (Cotogni et al., 2022; the cascade carries each earlier class's prototype
through every later task's projector).

After task t trains, the features of task t's training images before and after (the model's
pre-logits: the normalised CLS token) define an affine projector ``P_t: f ↦ f A + c``, fitted
by ridge least squares; no earlier image is kept, so the earlier classes' prototypes (their
mean features when learned) are moved by ``P_t`` instead of recomputed, and through
``P_t ∘ ... ∘ P_k+1`` for a class of task k. Classification is by the nearest prototype,
``argmin_c ||f − p_c||² = argmax_c (2 p_c · f − ||p_c||²)``: a Linear head with weights
``2 p_c`` and biases ``−||p_c||²`` (:meth:`Prototypes.head`), which the secure engine runs
like any other head.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["RIDGE", "Prototypes", "features", "fit_projector"]

RIDGE = 1e-3


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The pre-logit features (N, D) of normalised images ``x`` in evaluation mode."""
    model.eval()
    return torch.cat([model.forward_head(model.forward_features(x[i : i + batch_size]), pre_logits=True)
                      for i in range(0, len(x), batch_size)])


def fit_projector(old: torch.Tensor, new: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map ``(A, c)`` minimising ``||old A + c − new||² + ridge · n · ||A||²`` (the
    bias unpenalised), solved in float64.

    Raises:
        ValueError: ``old`` and ``new`` hold different numbers of rows.
    """
    if old.shape[0] != new.shape[0]:
        raise ValueError(f"projector: {old.shape[0]} old features against {new.shape[0]} new ones")
    x = torch.cat([old.double(), torch.ones(len(old), 1, dtype=torch.float64)], 1)
    penalty = torch.eye(x.shape[1], dtype=torch.float64) * ridge * len(old)
    penalty[-1, -1] = 0
    solution = torch.linalg.solve(x.T @ x + penalty, x.T @ new.double())
    return solution[:-1].float(), solution[-1].float()


class Prototypes:
    """Class prototypes (mean features), carried through projectors as the backbone drifts."""

    def __init__(self) -> None:
        self.classes: list[int] = []
        self.vectors = torch.zeros(0, 0)

    def add(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the mean feature of each class present in ``labels``."""
        new = sorted(set(labels.tolist()))
        means = torch.stack([feats[labels == c].mean(0) for c in new])
        self.vectors = means if not self.classes else torch.cat([self.vectors, means])
        self.classes += new

    def carry(self, projector: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Move every prototype by the affine ``projector`` ``(A, c)``."""
        weight, bias = projector
        self.vectors = self.vectors @ weight + bias

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """The class of the nearest prototype for each feature row."""
        nearest = torch.cdist(feats.double(), self.vectors.double()).argmin(1)
        return torch.tensor(self.classes)[nearest]

    def head(self, num_classes: int) -> nn.Linear:
        """The nearest-prototype rule as a Linear head over ``num_classes`` (every class must
        have a prototype).

        Raises:
            ValueError: a class without a prototype.
        """
        if sorted(self.classes) != list(range(num_classes)):
            raise ValueError(f"a head over {num_classes} classes needs a prototype of each, "
                             f"have {sorted(self.classes)}")
        head = nn.Linear(self.vectors.shape[1], num_classes)
        order = torch.tensor(self.classes).argsort()
        with torch.no_grad():
            head.weight.copy_(2 * self.vectors[order])
            head.bias.copy_(-(self.vectors[order] ** 2).sum(1))
        return head
