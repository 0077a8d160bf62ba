"""Resumable training: the state after each completed epoch, and its restoration.

``secvit train --resume`` continues a stopped run from its last completed epoch and ends
with the same weights as an uninterrupted run (same options, machine and thread count):
the file holds the model's and the optimiser's state, the distiller's own parameters,
the data order's and torch's generator states, and the options it was started with,
which a resumed run must repeat. It is written next to the checkpoint (atomically:
a stop while writing leaves the previous epoch's) and removed when training completes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import UsageError

__all__ = ["STATE_FILE", "TrainingState"]

STATE_FILE = "train_state.pt"


class TrainingState:
    """Where a run keeps its per-epoch state (``out/train_state.pt``), and the options it
    must match (``options``: the training configuration as a dict of plain values). An
    option the saved run did not have yet (added to secvit since) matches when it has its
    value in ``defaults``."""

    def __init__(self, out: str | Path, options: dict[str, Any], defaults: dict[str, Any] | None = None):
        self.path = Path(out) / STATE_FILE
        self.options, self.defaults = options, defaults or {}

    def save(self, epochs_done: int, model: nn.Module, optimizer: torch.optim.Optimizer, extra: list[nn.Parameter],
             generator: torch.Generator) -> None:
        """Record the state after ``epochs_done`` epochs."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"epochs_done": epochs_done, "options": self.options, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "extra": [p.detach().clone() for p in extra],
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, self.path)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, extra: list[nn.Parameter],
                generator: torch.Generator) -> int:
        """Load the last saved state into the run's objects; returns the epochs done.

        Raises:
            UsageError: no state to resume, or a run started with other options.
        """
        if not self.path.exists():
            raise UsageError(f"--resume: no training state in {self.path.parent} (it is written after each epoch "
                             "and removed once training completes)")
        state = torch.load(self.path, weights_only=True)
        saved = {k: self.defaults[k] for k in self.defaults.keys() - state["options"].keys()} | state["options"]
        changed = sorted(k for k in self.options.keys() | saved.keys() if self.options.get(k) != saved.get(k))
        if changed:
            raise UsageError(f"--resume: the run in {self.path.parent} was started with other options: "
                             + ", ".join(f"{k} {saved.get(k)!r} (now {self.options.get(k)!r})"
                                         for k in changed))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            for p, saved in zip(extra, state["extra"], strict=True):
                p.copy_(saved)
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["epochs_done"])

    def clear(self) -> None:
        """Remove the state (training completed)."""
        self.path.unlink(missing_ok=True)
