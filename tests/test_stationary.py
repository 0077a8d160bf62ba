"""Weight-stationary masks: products by a masked weight are right, cheaper, reveal the
activation to the owner only, and nothing an attacker can combine across images."""

from __future__ import annotations

import pytest
import torch

from protocols import backend
from protocols.backend import crypten
from protocols.fixed_point import FixedPoint
from protocols.stationary import fix_masks
from secvit.runtime.dealer import OfflinePhase

from .conftest import as_tensor, run_2pc, spied_step

W = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
IMAGES = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1))


def _products(dealer: bool, reuse_a: bool = False):
    """Two images' x @ W with W's mask fixed: each party's results, the bytes and rounds
    of each product and of the masking, and every tensor party 0 saw opened.
    ``reuse_a``: the weak control, a provider that hands out the same ``a`` each time."""

    def party(rank: int):
        offline = OfflinePhase(rank, dealer)
        w = crypten.cryptensor(W if rank == 0 else torch.zeros(W.shape), src=0)
        backend.reset_comm_stats()
        offline.run(lambda: fix_masks([w], 0, [W] if rank == 0 else None))
        masking = backend.comm_stats()
        provider = crypten.mpc.get_default_provider()
        triple, first = provider.stationary_triple, {}
        if reuse_a:
            def same_a(*args, **kwargs):
                first.setdefault("a", triple(*args, **kwargs))
                return first["a"]
            provider.stationary_triple = same_a
        outs, costs, opened = [], [], []
        for image in IMAGES:
            x = crypten.cryptensor(image if rank == 1 else torch.zeros(image.shape), src=1)
            y, cost, seen = spied_step(offline, ("product",), lambda: x.matmul(w))
            opened.append(seen)
            costs.append(cost)
            outs.append(y.get_plain_text())
        provider.stationary_triple = triple
        return outs, costs, masking, opened

    return run_2pc(party, dealer=dealer)


@pytest.mark.parametrize("dealer", [False, True], ids=["tfp", "dealer"])
def test_products_by_a_masked_weight_are_right_and_reveal_only_the_activation_to_the_owner(dealer):
    (outs, costs, masking, owner_saw), (_, client_costs, _, client_saw) = _products(dealer)
    for image, out in zip(IMAGES, outs):
        assert (as_tensor(out) - image @ W).abs().max() < 1e-3
    assert masking["rounds"] == 1 and masking["bytes"] == 16 * W.numel()
    # one message revealing x - a to the owner (8 bytes an element, each side), then the
    # exact truncation's round; the client receives only the truncation's opening
    expected = [(2, 8 * IMAGES[0].numel() + 16 * 3 * 5)] * 2
    assert [(c["rounds"], c["bytes"]) for c in costs] == expected
    assert [(c["rounds"], c["bytes"]) for c in client_costs] == expected
    assert [len(seen) for seen in owner_saw] == [2, 2] and [len(seen) for seen in client_saw] == [1, 1]


def test_the_owner_must_give_its_weights_plaintext():
    def party(rank: int):
        w = crypten.cryptensor(W if rank == 0 else torch.zeros(W.shape), src=0)
        with pytest.raises(ValueError, match="plaintext values"):
            fix_masks([w], rank)  # every party claims to own it; none gives the values
        return True

    assert run_2pc(party) == [True, True]


def test_emulation_counts_what_the_parties_send():
    fp = FixedPoint(16)
    w = fp.tensor(W)
    fix_masks([w], 0)
    masking, fp.cost = fp.cost, type(fp.cost)()
    y = fp.tensor(IMAGES[0]).matmul(w)
    assert (y.get_plain_text() - IMAGES[0].double() @ W.double()).abs().max() < 1e-3
    assert (masking.rounds, masking.bytes) == (1, 16 * W.numel())
    assert (fp.total_cost().rounds, fp.total_cost().bytes) == (2, 8 * IMAGES[0].numel() + 16 * 3 * 5)


def test_the_openings_of_two_images_do_not_reveal_their_difference():
    """Party 0 subtracts what it saw opened for image 1 from what it saw for image 2: with a
    reused ``a`` (the weak control) that is exactly x2 - x1, the client's secret; with
    fresh ones it is uniform noise."""
    scale = 2**16

    def difference(reuse_a: bool) -> torch.Tensor:
        (_, _, _, opened), _ = _products(False, reuse_a)
        # each image's first opening is its masked activation (the second, the truncation's)
        e1, e2 = as_tensor(opened[0][0]), as_tensor(opened[1][0])
        return (e2 - e1).double() / scale

    secret = IMAGES[1].double() - IMAGES[0].double()
    assert (difference(True) - secret).abs().max() < 1e-4  # the attack works on the control
    leaked = difference(False)
    assert (leaked - secret).abs().min() > 1.0 and leaked.abs().min() > 1e6  # and fails on secvit


def test_a_product_by_a_masked_weight_runs_dry_on_every_party():
    """A dry run (the offline phase's first pass) keeps each party's rank: the client must
    not take the owner's side of a product, which needs the weight's plaintext."""

    def party(rank: int):
        w = crypten.cryptensor(W if rank == 0 else torch.zeros(W.shape), src=0)
        fix_masks([w], 0, [W] if rank == 0 else None)
        x = crypten.cryptensor(IMAGES[0] if rank == 1 else torch.zeros(IMAGES[0].shape), src=1)
        with backend.dry_run() as requests:
            seen_rank = backend.crypten_comm.get().get_rank()
            x.matmul(w)
        return seen_rank, [r.kind for r in requests]

    assert run_2pc(party) == [(0, ["smatmul", "trunc"]), (1, ["smatmul", "trunc"])]
