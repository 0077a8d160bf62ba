"""Sparse teacher logits (after TinyViT, Wu et al., ECCV 2022): distil without running the
teacher during training.

``secvit cache-logits`` runs the teacher once per epoch over the augmented training set
and stores, per epoch and sample, the augmentation seed and the teacher's top-K
probabilities (values float16, class indices int16). Training replays each sample's
augmentation from its seed (:func:`secvit.augment.shift_from_seeds`) and rebuilds the distribution

    p_c = v_c for c in the top K, else (1 - sum v) / (C - K)

with loss -sum_c p_c log softmax(z_s)_c (:func:`rebuild`, :func:`sparse_loss`).
Storage per sample and epoch: 4K + 8 bytes instead of 4C.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..augment import shift_from_seeds
from ..errors import UsageError

__all__ = ["LogitCache", "cache_logits", "rebuild", "sparse_loss"]


def rebuild(values: torch.Tensor, indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) teacher distribution from its top-K (values, indices): the rest of the mass
    spread evenly over the other C - K classes."""
    values = values.float()
    k = values.shape[-1]
    rest = (1 - values.sum(-1, keepdim=True)).clamp_min(0) / max(1, num_classes - k)
    return rest.expand(-1, num_classes).clone().scatter_(1, indices.long(), values)


def sparse_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of -sum_c target_c log softmax(student)_c."""
    return -(target * F.log_softmax(student, -1)).sum(-1).mean()


@dataclass
class LogitCache:
    """Seeds (E, N) int64, top-K values (E, N, K) float16 and indices (E, N, K) int16,
    and what they were made from (``info``: teacher, data, shift, classes, top_k)."""

    seeds: torch.Tensor
    values: torch.Tensor
    indices: torch.Tensor
    info: dict

    @property
    def epochs(self) -> int:
        return self.seeds.shape[0]

    def save(self, path: str | Path) -> None:
        save_file({"seeds": self.seeds, "values": self.values, "indices": self.indices}, str(path),
                  metadata={"info": json.dumps(self.info)})

    @classmethod
    def load(cls, path: str | Path) -> "LogitCache":
        """Raises:
            ValueError: the file is missing or not a logit cache."""
        try:
            with safe_open(str(path), "pt") as f:
                info = json.loads((f.metadata() or {})["info"])
                return cls(f.get_tensor("seeds"), f.get_tensor("values"), f.get_tensor("indices"), info)
        except (OSError, KeyError, SafetensorError, json.JSONDecodeError) as e:
            raise UsageError(f"{path}: not a logit cache written by secvit cache-logits ({e})") from None

    def check(self, data: str, num_classes: int, samples: int, shift: int) -> None:
        """Raises:
            ValueError: the cache was made for other data or another augmentation."""
        made = (self.info["data"], self.info["num_classes"], self.seeds.shape[1], self.info["shift"])
        if made != (data, num_classes, samples, shift):
            raise UsageError(f"logit cache made for data {made[0]} ({made[1]} classes, {made[2]} samples, shift "
                             f"{made[3]}); this training is {data} ({num_classes} classes, {samples} samples, "
                             f"shift {shift})")

    def batch(self, epoch: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeds and rebuilt teacher distributions of samples ``idx`` in ``epoch`` (the
        cache's epochs repeat when training runs longer)."""
        e = epoch % self.epochs
        return self.seeds[e, idx], rebuild(self.values[e, idx], self.indices[e, idx], self.info["num_classes"])


@torch.no_grad()
def cache_logits(teacher_ckpt: str, out: str | Path, top_k: int = 5, epochs: int = 10, shift: int = 3,
                 seed: int = 0, batch_size: int = 256) -> LogitCache:
    """Run the teacher over ``epochs`` augmented passes of its training set; save and
    return the cache.

    Raises:
        ValueError: ``top_k`` outside [1, classes] or ``epochs`` < 1.
    """
    from ..checkpoint import load_model
    from ..data import load_dataset

    teacher, meta = load_model(teacher_ckpt)
    if not 1 <= top_k <= meta.num_classes or epochs < 1:
        raise UsageError(f"--top-k must be in [1, {meta.num_classes}] and --epochs >= 1")
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    seeds = torch.randint(0, 2**62, (epochs, n), generator=gen)
    values = torch.empty(epochs, n, top_k, dtype=torch.float16)
    indices = torch.empty(epochs, n, top_k, dtype=torch.int16)
    for e in range(epochs):
        for i in range(0, n, batch_size):
            raw = shift_from_seeds(data.x_train[i : i + batch_size], seeds[e, i : i + batch_size], shift)
            probs = F.softmax(teacher(meta.normalization.apply(raw)), -1)
            top = probs.topk(top_k, -1)
            values[e, i : i + batch_size], indices[e, i : i + batch_size] = top.values.half(), top.indices.short()
    info = {"teacher": str(teacher_ckpt), "data": meta.data, "num_classes": meta.num_classes, "shift": shift,
            "top_k": top_k, "seed": seed}
    cache = LogitCache(seeds, values, indices, info)
    cache.save(out)
    return cache
