"""Distillation losses on logits (student ``z_s``, teacher ``z_t``, labels ``y``).

``kd`` (Hinton et al., 2015): KL(softmax(z_t / T) || softmax(z_s / T)) T^2.

``nkd`` (normalized KD; Yang et al., "From Knowledge Distillation to Self-Knowledge
Distillation", ICCV 2023): -T_t log S_t - gamma lambda^2 sum_{i != t} T^_i log S^_i, with
T_t, S_t the teacher's and student's probabilities of the target class and T^, S^ the
softmaxes of the non-target logits divided by lambda (gamma = 1.5, lambda = 1).

Both are added to the training cross-entropy (:mod:`secvit.distill.distillers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["METHODS", "kd_loss", "nkd_loss", "non_target_logits"]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Batch mean of KL(teacher || student) at ``temperature``, times temperature^2."""
    log_s = F.log_softmax(student / temperature, -1)
    log_t = F.log_softmax(teacher / temperature, -1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature**2


def non_target_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logits without the target column: (N, C - 1)."""
    keep = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
    return logits[keep].view(len(logits), -1)


def nkd_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, gamma: float = 1.5,
             lam: float = 1.0) -> torch.Tensor:
    """Batch mean of the NKD loss (target term and normalised non-target term)."""
    t_target = F.softmax(teacher, -1).gather(1, target[:, None]).squeeze(1)
    log_s_target = F.log_softmax(student, -1).gather(1, target[:, None]).squeeze(1)
    t_hat = F.softmax(non_target_logits(teacher, target) / lam, -1)
    log_s_hat = F.log_softmax(non_target_logits(student, target) / lam, -1)
    non_target = (t_hat * log_s_hat).sum(-1)
    return (-t_target * log_s_target - gamma * lam**2 * non_target).mean()


METHODS = ("kd", "nkd", "mpcformer", "uskd", "sparse")
"""Distillation methods of ``secvit train --distill`` (:mod:`secvit.distill.distillers`)."""
