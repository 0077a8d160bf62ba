"""A stopped training run resumed from its last completed epoch ends with the weights of
an uninterrupted run; a resume with other options, or with nothing to resume, is refused."""

from __future__ import annotations

import pytest
import torch

from secvit.checkpoint import load_model
from secvit.errors import UsageError
from secvit.train import TrainConfig, train
from secvit.train_state import STATE_FILE

from .conftest import stop_in_epoch


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"model": "vit_lite_1_2_16", "epochs": 3, "warmup_epochs": 1, "lr": 3e-3, "threads": 1,
                          "distill": "uskd", **overrides})  # USKD: a weak head the optimiser trains too


def test_a_resumed_run_ends_with_the_uninterrupted_runs_weights(tmp_path, monkeypatch):
    train(_config(), tmp_path / "whole")
    assert not (tmp_path / "whole" / STATE_FILE).exists()  # removed once the checkpoint is written
    with monkeypatch.context() as m:
        stop_in_epoch(m, 3)
        with pytest.raises(KeyboardInterrupt):
            train(_config(), tmp_path / "stopped")
    assert torch.load(tmp_path / "stopped" / STATE_FILE, weights_only=True)["epochs_done"] == 2
    train(_config(), tmp_path / "stopped", resume=True)
    whole, stopped = load_model(tmp_path / "whole")[0], load_model(tmp_path / "stopped")[0]
    for (name, a), b in zip(whole.state_dict().items(), stopped.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_refuses_other_options_or_no_state(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="no training state"):
        train(_config(), tmp_path / "none", resume=True)
    with monkeypatch.context() as m:
        stop_in_epoch(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train(_config(), tmp_path / "run")
    with pytest.raises(UsageError, match=r"lr 0.003 \(now 0.001\)"):
        train(_config(lr=1e-3), tmp_path / "run", resume=True)
