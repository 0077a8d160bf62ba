"""Distillation losses on logits (student ``z_s``, teacher ``z_t``, labels ``y``).

``kd`` (Hinton et al., 2015): KL(softmax(z_t / T) || softmax(z_s / T)) T^2.

``nkd`` (normalized KD; Yang et al., "From Knowledge Distillation to Self-Knowledge
Distillation", ICCV 2023): -T_t log S_t - gamma lambda^2 sum_{i != t} T^_i log S^_i, with
T_t, S_t the teacher's and student's probabilities of the target class and T^, S^ the
softmaxes of the non-target logits divided by lambda (gamma = 1.5, lambda = 1).

``affinity`` (TinyCLIP's affinity mimicking, Wu et al., ICCV 2023, in its vision-only
form): each layer's token-to-token affinity A = softmax(F F^T / tau) over the tokens' L2-
normalised features F (rows of an (n, n) map per image), KL(A_teacher || A_student) per
matched layer pair, averaged over images, rows and pairs; tau = 0.1.

All are added to the training cross-entropy (:mod:`secvit.distill.distillers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["AFFINITY_TAU", "METHODS", "affinity_loss", "kd_loss", "log_affinity", "nkd_loss", "non_target_logits"]

AFFINITY_TAU = 0.1


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


def log_affinity(features: torch.Tensor, tau: float = AFFINITY_TAU) -> torch.Tensor:
    """log softmax(F F^T / tau) of (b, n, c) token features, F L2-normalised per token: (b, n, n)."""
    f = F.normalize(features, dim=-1)
    return F.log_softmax(f @ f.transpose(-2, -1) / tau, -1)


def affinity_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = AFFINITY_TAU) -> torch.Tensor:
    """KL(A_teacher || A_student) of two layers' (b, n, c) token features (widths may
    differ, token counts may not), averaged over images and rows."""
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"affinity needs the same images and tokens: student {tuple(student.shape)}, "
                         f"teacher {tuple(teacher.shape)}")
    log_s, log_t = log_affinity(student, tau), log_affinity(teacher, tau)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


METHODS = ("kd", "nkd", "mpcformer", "uskd", "sparse", "affinity")
"""Distillation methods of ``secvit train --distill`` (:mod:`secvit.distill.distillers`)."""
