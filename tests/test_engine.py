"""The secure engine against plaintext, for every registered model."""

from __future__ import annotations

import pytest
import torch

from protocols import backend
from secvit.models import create_model, list_models
from secvit.ops import UnsupportedOpError
from secvit.secure.plan import SecurePlan

from .conftest import as_tensor, in_chans, run_2pc


def _in_range(model: torch.nn.Module) -> torch.nn.Module:
    # timm initialises the CLS token at 1e-6: its LayerNorm row variance would sit far
    # below any trained model's; give random models the scale trained ones have.
    with torch.no_grad():
        model.cls_token.normal_(0, 1)
        model.pos_embed.normal_(0, 0.5)
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_secure_forward_matches_plaintext(name: str):
    torch.manual_seed(0)
    model = _in_range(create_model(name))
    x = torch.rand(1, in_chans(model), *model.patch_embed.img_size)
    with torch.no_grad():
        ref = model(x)

    def party(rank: int):
        if rank == 0:
            plan = SecurePlan(model)
        else:
            with torch.device("meta"):
                plan = SecurePlan(create_model(name))
        plan.encrypt_weights(rank)
        backend.reset_comm_stats()
        y = plan(plan.encrypt_input(x if rank == 1 else None, rank, tuple(x.shape))).get_plain_text(dst=1)
        return y, backend.comm_stats()["rounds"]

    (_, owner_rounds), (logits, client_rounds) = run_2pc(party)
    assert owner_rounds == client_rounds > 0
    assert (as_tensor(logits) - ref).abs().max() < 0.05


def test_unsupported_module_named():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Softplus())
    with pytest.raises(UnsupportedOpError, match="Softplus"):
        SecurePlan(model)
