"""A refactor of the engine changes no figure: logits, bytes and rounds against a record.

``tests/figures/forward.json`` is written by this module's ``record`` (run as
``python -m tests.test_unchanged_figures``): first before the emulation was derived from
the secure kernels and plain modules were rewritten with the ``exact`` policy instead of
being lowered directly (which moved nothing), again whenever a change means to move the
figures (its commit says which and why). The test measures them again: each party's
bytes and rounds must be equal, the emulated logits equal to a few units of 2^-16, and
the MPC logits as close as two MPC runs are to each other (each exact truncation rounds
up or down at random).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from protocols import backend
from secvit.checkpoint import load_model
from secvit.data import load_dataset
from secvit.models import create_model
from secvit.secure.emulation import emulate
from secvit.secure.plan import SecurePlan

from .conftest import as_tensor, run_2pc

FIGURES = Path(__file__).with_name("figures") / "forward.json"
SHIPPED = ("vit_lite_7_4_32-digits", "vit_lite_7_4_32-digits-mpcformer", "vit_lite_7_4_32-digits-mpcvit",
           "vit_lite_3_4_32-digits-lean")
TIMM = "deit_tiny_patch16_224"  # random weights, plain (timm's attention traced inline)
MPC_IMAGES, EMULATED_IMAGES = 2, 16
EMULATION_TOLERANCE = 1e-4
MPC_TOLERANCE = 1e-2


def _case(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model and the (normalised) images of one case."""
    if name == TIMM:
        torch.manual_seed(0)
        model = create_model(TIMM, img_size=32, patch_size=8, num_classes=10).eval()
        with torch.no_grad():
            model.cls_token.normal_(0, 1)
            model.pos_embed.normal_(0, 0.5)
        return model, torch.rand(EMULATED_IMAGES, 3, 32, 32)
    model, meta = load_model(Path("checkpoints") / name)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    return model, meta.normalization.apply(data.x_test[:EMULATED_IMAGES])


def measure(name: str) -> dict[str, Any]:
    """Emulated logits of the case's images, and MPC logits, bytes and rounds per party
    of one forward pass of the first few (TFP, exact truncation)."""
    model, x = _case(name)
    batch = x[:MPC_IMAGES]

    def party(rank: int):
        plan = SecurePlan(model)
        plan.encrypt_weights(rank)
        share = plan.encrypt_input(batch if rank == 1 else None, rank, tuple(batch.shape))
        backend.reset_comm_stats()
        logits = plan(share)
        stats = backend.comm_stats()
        return logits.get_plain_text(dst=1), stats["bytes"], stats["rounds"]

    (_, bytes0, rounds0), (logits, bytes1, rounds1) = run_2pc(party)
    return {"emulated": emulate(model, x).tolist(), "mpc": as_tensor(logits).tolist(),
            "bytes": [bytes0, bytes1], "rounds": [rounds0, rounds1]}


@pytest.mark.parametrize("name", [*SHIPPED, TIMM])
def test_figures_as_recorded(name: str):
    recorded = json.loads(FIGURES.read_text())[name]
    now = measure(name)
    assert now["bytes"] == recorded["bytes"] and now["rounds"] == recorded["rounds"]
    emulated, mpc = torch.tensor(now["emulated"]), torch.tensor(now["mpc"])
    assert (emulated - torch.tensor(recorded["emulated"])).abs().max() <= EMULATION_TOLERANCE
    assert (mpc - torch.tensor(recorded["mpc"])).abs().max() <= MPC_TOLERANCE
    assert (mpc - emulated[:MPC_IMAGES]).abs().max() <= MPC_TOLERANCE


def record() -> None:
    """Write the figures of every case (run once, before a refactor)."""
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps({name: measure(name) for name in [*SHIPPED, TIMM]}, indent=1) + "\n")


if __name__ == "__main__":
    record()
