"""Distillation methods as training-loss terms (``secvit train --distill METHOD``).

A :class:`Distiller` sees every training batch after the student's forward pass and
returns the batch's loss from the student's logits and its cross-entropy ``ce``:

- ``kd``, ``nkd``: ce + the logit loss against the teacher (:mod:`.losses`).
- ``mpcformer`` (Li et al., MPCFormer, ICLR 2023), two stages: for the first
  ``stage1_share`` of training, sum over layers of the MSE between student and teacher
  attention logits and between hidden states (embedding output and every block output);
  then soft cross-entropy on the teacher's logits at T = 1. The student starts from the
  teacher's weights (``--init``).
- ``uskd`` (Yang et al., ICCV 2023; no teacher): ce + alpha * target term with soft target
  S_t^2 + 1 - mean_batch(S_t^2) (detached) + beta * non-target term against Zipf's law
  (1/rank, normalised over the C - 1 non-target classes) over the rank given by a weak
  linear head on the CLS token at depth L/2, + 0.005 * that head's cross-entropy.
- ``affinity`` (TinyCLIP, vision-only): ce + the mean over layer pairs of the KL between
  teacher and student token-to-token affinities (:func:`.losses.affinity_loss`); student
  block j's output is matched with teacher block j s's, s = L_t // L_s.
- ``sparse``: cached top-K teacher logits (:mod:`.sparse`); each sample's augmentation is
  replayed from its stored seed; loss -sum p log softmax(z_s) (the teacher is not run).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..augment import random_flip, random_shift, shift_from_seeds
from .features import FeatureTap
from .losses import affinity_loss, kd_loss, nkd_loss, non_target_logits
from .sparse import LogitCache, sparse_loss
from ..errors import UsageError

__all__ = ["AffinityDistiller", "Batch", "Distiller", "LogitDistiller", "MPCFormerDistiller", "SparseDistiller",
           "USKDDistiller"]


@dataclass
class Batch:
    """One training batch: raw (augmented, not normalised) images, labels, sample indices,
    epoch, and the share of training done before it."""

    raw: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    epoch: int
    progress: float


class Distiller:
    """A loss term over a training batch; the default is the cross-entropy alone."""

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the distiller trains beside the student's (e.g. a weak head)."""
        return []

    def augment(self, x_train: torch.Tensor, idx: torch.Tensor, epoch: int, shift: int, flip: bool,
                generator: torch.Generator) -> torch.Tensor:
        """The batch's raw training images (random translation, then random mirroring if ``flip``)."""
        shifted = random_shift(x_train[idx], shift, generator)
        return random_flip(shifted, generator) if flip else shifted

    def loss(self, logits: torch.Tensor, ce: torch.Tensor, batch: Batch) -> torch.Tensor:
        return ce


class _Teacher:
    """A frozen teacher run on the student's (raw) batch with its own normalisation."""

    def __init__(self, teacher: nn.Module, normalization):
        self.model, self.normalization = teacher.eval(), normalization
        for p in teacher.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalization.apply(raw))


class LogitDistiller(Distiller):
    """``kd`` (at ``temperature``) or ``nkd`` against a teacher's logits, added to ce."""

    def __init__(self, method: str, teacher: nn.Module, normalization, temperature: float = 4.0):
        self.method, self.teacher, self.temperature = method, _Teacher(teacher, normalization), temperature

    def loss(self, logits: torch.Tensor, ce: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = self.teacher(batch.raw)
        if self.method == "kd":
            return ce + kd_loss(logits, target, self.temperature)
        return ce + nkd_loss(logits, target, batch.y)


class MPCFormerDistiller(Distiller):
    """MPCFormer's two stages. Student layer i is matched with teacher layer
    (i + 1) s - 1 and hidden state j with teacher hidden state j s, s = L_t // L_s
    (the identity at equal depth).

    Raises:
        ValueError: the teacher is shallower than the student, or their heads differ.
    """

    def __init__(self, teacher: nn.Module, normalization, student: nn.Module, stage1_share: float = 0.5):
        self.teacher, self.stage1_share = _Teacher(teacher, normalization), stage1_share
        self.t_tap, self.s_tap = FeatureTap(teacher), FeatureTap(student)
        self.t_layers, self.s_layers = self.t_tap.layers, self.s_tap.layers
        if self.t_layers < self.s_layers:
            raise UsageError(f"the teacher ({self.t_layers} blocks) is shallower than the student ({self.s_layers})")
        self.stride = self.t_layers // self.s_layers

    def loss(self, logits: torch.Tensor, ce: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.progress >= self.stage1_share:
            return sparse_loss(logits, F.softmax(self.teacher(batch.raw), -1))
        self.teacher(batch.raw)
        s, st = self.stride, self.s_tap.hidden
        hidden = sum(F.mse_loss(st[j], self.t_tap.hidden[j * s]) for j in range(len(st)))
        with torch.no_grad():
            t_logits = self.t_tap.attention_logits()
        s_logits = self.s_tap.attention_logits()
        if s_logits[0].shape != t_logits[0].shape:
            raise ValueError(f"attention logits of student {tuple(s_logits[0].shape)} and teacher "
                             f"{tuple(t_logits[0].shape)} differ (heads or tokens)")
        attention = sum(F.mse_loss(a, t_logits[(i + 1) * s - 1]) for i, a in enumerate(s_logits))
        return hidden + attention


class AffinityDistiller(Distiller):
    """TinyCLIP's affinity mimicking over block outputs (hidden states 1..L_s of the
    student against j s of the teacher), added to ce.

    Raises:
        ValueError: the teacher is shallower than the student.
    """

    def __init__(self, teacher: nn.Module, normalization, student: nn.Module):
        self.teacher = _Teacher(teacher, normalization)
        self.t_tap, self.s_tap = FeatureTap(teacher, attention=False), FeatureTap(student, attention=False)
        if self.t_tap.layers < self.s_tap.layers:
            raise UsageError(f"the teacher ({self.t_tap.layers} blocks) is shallower than the student "
                             f"({self.s_tap.layers})")
        self.stride = self.t_tap.layers // self.s_tap.layers

    def loss(self, logits: torch.Tensor, ce: torch.Tensor, batch: Batch) -> torch.Tensor:
        self.teacher(batch.raw)
        pairs = [(self.s_tap.hidden[j], self.t_tap.hidden[j * self.stride]) for j in range(1, self.s_tap.layers + 1)]
        return ce + sum(affinity_loss(s, t) for s, t in pairs) / len(pairs)


class USKDDistiller(Distiller):
    """Self-distillation with normalised target and Zipf non-target soft labels.

    Args:
        student: The model trained (its CLS token at depth L/2 feeds the weak head).
        num_classes: Classes C.
        alpha: Weight of the target term (1).
        beta: Weight of the non-target term (0.1).
        weak_weight: Weight of the weak head's cross-entropy (0.005).
    """

    def __init__(self, student: nn.Module, num_classes: int, alpha: float = 1.0, beta: float = 0.1,
                 weak_weight: float = 0.005):
        self.tap = FeatureTap(student, attention=False)
        self.depth = self.tap.layers // 2
        self.head = nn.Linear(student.head.in_features, num_classes)
        self.alpha, self.beta, self.weak_weight = alpha, beta, weak_weight
        ranks = torch.arange(1, num_classes, dtype=torch.float32)
        self.zipf = (1 / ranks) / (1 / ranks).sum()  # by rank 1 .. C-1

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def loss(self, logits: torch.Tensor, ce: torch.Tensor, batch: Batch) -> torch.Tensor:
        weak = self.head(self.tap.hidden[self.depth][:, 0])
        log_p = F.log_softmax(logits, -1)
        log_s_t = log_p.gather(1, batch.y[:, None]).squeeze(1)
        s_t2 = log_s_t.detach().exp() ** 2
        target = -((s_t2 + 1 - s_t2.mean()) * log_s_t).mean()
        rank = non_target_logits(weak.detach(), batch.y).argsort(-1, descending=True).argsort(-1)  # 0 = most likely
        zipf = self.zipf[rank]
        non_target = -(zipf * F.log_softmax(non_target_logits(logits, batch.y), -1)).sum(-1).mean()
        return ce + self.alpha * target + self.beta * non_target + self.weak_weight * F.cross_entropy(weak, batch.y)


class SparseDistiller(Distiller):
    """Cached sparse teacher logits, replayed with their augmentation seeds.

    Raises:
        ValueError: the cache was made for other data, classes, samples or shift.
    """

    def __init__(self, cache: LogitCache, data: str, num_classes: int, samples: int, shift: int):
        cache.check(data, num_classes, samples, shift)
        self.cache = cache
        self._target: torch.Tensor | None = None

    def augment(self, x_train: torch.Tensor, idx: torch.Tensor, epoch: int, shift: int, flip: bool,
                generator: torch.Generator) -> torch.Tensor:
        seeds, self._target = self.cache.batch(epoch, idx)
        return shift_from_seeds(x_train[idx], seeds, shift)

    def loss(self, logits: torch.Tensor, ce: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sparse_loss(logits, self._target)
