"""Training augmentation: random translation by up to ``max_shift`` pixels (zero fill),
drawn from a generator or replayed from per-sample seeds (for cached teacher logits), and
random horizontal flips."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_flip", "random_shift", "shift_from_seeds", "translate"]


def translate(x: torch.Tensor, dy: list[int], dx: list[int], max_shift: int) -> torch.Tensor:
    """Image i cropped at offset (dy[i], dx[i]) from its ``max_shift``-padded copy: a
    translation by (max_shift - dy[i], max_shift - dx[i]) pixels with zero fill."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random integer offset in [-max_shift, max_shift] (zero fill)."""
    if max_shift == 0:
        return x
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, len(x)), generator=generator).tolist()
    return translate(x, dy, dx, max_shift)


def shift_from_seeds(x: torch.Tensor, seeds: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate image i by the offsets its seed names: dy = seed mod (2s+1),
    dx = (seed div (2s+1)) mod (2s+1). Same seed, same image."""
    side = 2 * max_shift + 1
    return translate(x, (seeds % side).tolist(), ((seeds // side) % side).tolist(), max_shift)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left to right with probability 1/2."""
    flipped = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flipped[:, None, None, None], x.flip(-1), x)
