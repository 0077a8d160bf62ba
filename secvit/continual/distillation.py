"""Feature distillation on the backbone across tasks: the self-attention blocks' output
tokens on the current task's images are kept near those of the model as it was before the
task, ``λ · mean ||B_t(x) − B_t−1(x)||²`` (the frozen copy runs on the same batch). It bounds
the backbone's drift, which the cascade of projectors (:mod:`.drift`) then compensates; no
earlier image is needed. Attached to the model under training, it is found by
:func:`secvit.train.fit` as a module with a ``regularization``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FEATURE_DISTILLATION", "FeatureDistillation"]

FEATURE_DISTILLATION = 1.0


class FeatureDistillation(nn.Module):
    """λ times the mean squared distance between ``model``'s backbone tokens and those of a
    frozen copy of it taken now, on each training batch."""

    def __init__(self, model: nn.Module, weight: float = FEATURE_DISTILLATION):
        super().__init__()
        self.weight = weight
        old = copy.deepcopy(model).eval()
        for p in old.parameters():
            p.requires_grad_(False)
        self.__dict__["old"] = old  # not a submodule: neither trained nor saved
        self.__dict__["captured"] = {}
        self.__dict__["hooks"] = (model.patch_embed.register_forward_pre_hook(self._capture_input),
                                  model.blocks.register_forward_hook(self._capture_tokens))

    def _capture_input(self, module: nn.Module, args: tuple) -> None:
        self.captured["x"] = args[0]

    def _capture_tokens(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.captured["tokens"] = output

    def remove(self) -> None:
        """Detach from the model (the task is over)."""
        for hook in self.hooks:
            hook.remove()
        self.captured.clear()

    def regularization(self) -> torch.Tensor:
        """The distillation loss of the last training forward pass."""
        old = self.old
        with torch.no_grad():
            target = old.blocks(old.norm_pre(old._pos_embed(old.patch_embed(self.captured["x"]))))
        return self.weight * F.mse_loss(self.captured["tokens"], target)
