"""Shared fixtures: a small trained checkpoint and an in-process 2-party MPC runner."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

from protocols import backend
from protocols.backend import crypten


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """vit_lite_1_2_16 trained for a few epochs on digits (about 15 s on 2 cores)."""
    from secvit.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(TrainConfig(model="vit_lite_1_2_16", epochs=40, warmup_epochs=1, lr=3e-3), out)
    return str(out)


def _picklable(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(_picklable(v) for v in value)
    if isinstance(value, dict):
        return {k: _picklable(v) for k, v in value.items()}
    return value


def run_2pc(fn: Callable[[int], Any], provider: str = "TFP") -> list[Any]:
    """Run ``fn(rank)`` in two forked CrypTen parties; returns each party's result.

    Tensors in results come back as numpy arrays (torch shared memory does not survive
    the party process).
    """
    backend.configure(backend.MPCSettings(provider=provider))

    @crypten.mpc.run_multiprocess(world_size=2)
    def party() -> Any:
        torch.set_num_threads(1)
        return _picklable(fn(crypten.comm.get().get_rank()))

    results = party()
    assert results is not None, "a party failed (see the log above)"
    return results


def as_tensor(value: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(value))


def secure_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on ``x`` under 2-party MPC (owner: rank 0, client: rank 1)."""
    from secvit.secure.plan import SecurePlan

    def party(rank: int):
        plan = SecurePlan(model)
        plan.encrypt_weights(rank)
        return plan(plan.encrypt_input(x if rank == 1 else None, rank, tuple(x.shape))).get_plain_text(dst=1)

    return as_tensor(run_2pc(party)[1])
