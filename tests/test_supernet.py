"""The MPC-budget supernet (secvit.supernet): the space, the weight-sharing forward against
the extracted ViT-Lite, the sampler's walk and banks on hand-made values, the secure cost
against a measured session, and a small train-and-search run."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from secvit.checkpoint import load_model
from secvit.data import load_dataset
from secvit.cli import main
from secvit.errors import UsageError
from secvit.models import create_model
from secvit.supernet.cost import SubnetCost, subnet_cost
from secvit.supernet.run import hold_out, search_supernet, spread, supernet_front, train_supernet
from secvit.supernet.sampler import ComplexityAwareSampler, walk
from secvit.supernet.space import SearchSpace, Subnet
from secvit.supernet.supervit import SuperViT, extract, subnet_forward

from .conftest import stop_in_epoch

BUILD = functools.partial(create_model, "vit_lite_2_2_32")


def _base() -> torch.nn.Module:
    torch.manual_seed(0)
    base = create_model("vit_lite_2_2_32").eval()
    with torch.no_grad():  # non-trivial norms
        for m in base.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    return base


def test_space_of_a_vit_lite_and_its_checks():
    base = create_model("vit_lite_7_4_32")
    space = SearchSpace.for_model(base)
    assert space.depths == (3, 4, 5, 6, 7) and space.embed_dims == (128, 192, 256)
    assert space.heads == (2, 3, 4) and space.mlp_ratios == (1.0, 1.5, 2.0)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert space.largest() == Subnet(7, 256, 4, 2.0, ("softmax.exact",) * 7)
    with pytest.raises(UsageError, match="embed_dims"):
        SearchSpace((2,), (512,), (2,), (2.0,)).check(base)
    with pytest.raises(UsageError, match="not a softmax protocol"):
        SearchSpace((2,), (64,), (2,), (2.0,), ("gelu.quad",)).check(base)
    with pytest.raises(ValueError, match="needs 3 attention protocols"):
        Subnet(3, 64, 2, 2.0, ("softmax.exact",))
    s = space.sample(torch.Generator().manual_seed(3))
    assert Subnet.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_largest_subnet_is_the_model_and_extraction_computes_the_same():
    base = _base()
    x = torch.randn(3, 3, 32, 32)
    space = SearchSpace.for_model(base)
    with torch.no_grad():
        assert torch.equal(subnet_forward(base, space.largest(), x), base(x))
        generator = torch.Generator().manual_seed(1)
        subnets = [space.sample(generator) for _ in range(6)] + [Subnet(2, 32, 2, 1.5, ("softmax.relu",) * 2)]
        for s in subnets:  # w32 with 2 heads of 32 channels: head_dim kept apart from the width
            model = extract(base, s, BUILD)
            assert (model(x) - subnet_forward(base, s, x)).abs().max() < 1e-5, s.name()


def test_a_width_its_heads_do_not_divide_builds_with_the_supernets_head_width():
    model = create_model("vit_lite_7_4_32", embed_dim=128, num_heads=3, head_dim=64)  # 3 heads of 64 on width 128
    assert model.blocks[0].attn.num_heads == 3 and model.blocks[0].attn.qkv.weight.shape == (3 * 192, 128)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_supervit_trains_the_sampled_subnet_and_evaluates_the_largest():
    base = _base()
    supervit = SuperViT(base, SearchSpace.for_model(base))
    small = Subnet(1, 32, 1, 1.0, ("softmax.scaling",))
    supervit.config = small
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(supervit.train()(x), subnet_forward(base, small, x))
        assert torch.equal(supervit.eval()(x), base(x))


def test_walk_moves_one_bin_at_a_time_and_covers_the_range():
    assert [walk(s, 4) for s in range(11)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert {walk(s, 1) for s in range(5)} == {0}


def _sampler(explore: float) -> ComplexityAwareSampler:
    """16 subnets in 4 bins by a made-up complexity; every calibration loss 0 until a test sets them."""
    space = SearchSpace((1, 2), (32, 64), (1, 2), (1.0, 2.0), ("softmax.exact",))
    pool = [Subnet(d, w, h, r, ("softmax.exact",) * d) for d in (1, 2) for w in (32, 64) for h in (1, 2)
            for r in (1.0, 2.0)]
    complexity = [s.depth * 100 + s.embed_dim + s.num_heads + s.mlp_ratio for s in pool]
    assert len(pool) == 16 and space.largest() in pool
    sampler = ComplexityAwareSampler(pool, complexity, (torch.zeros(1), torch.zeros(1)), bins=4, bank_size=2,
                                     candidates=3, refresh=5, explore=explore)
    sampler._loss = lambda model, s: 0.0
    return sampler


def test_complexity_aware_draws_stay_in_neighbouring_bins():
    sampler = _sampler(explore=1.0)  # every draw random within its bin
    bin_of = {s: b for b, members in enumerate(sampler.bins) for s in members}
    assert [len(m) for m in sampler.bins] == [4, 4, 4, 4]
    drawn = [sampler.next(None) for _ in range(24)]
    steps = [bin_of[s] for s in drawn]
    assert steps[:7] == [0, 1, 2, 3, 2, 1, 0]
    assert all(abs(a - b) <= 1 for a, b in zip(steps, steps[1:]))
    assert sampler.visits == [4, 8, 8, 4] and sampler.summary()["from_bank"] == 0.0
    assert len(set(drawn)) > 4  # not one subnet per bin


def test_performance_aware_draws_come_from_the_best_of_the_bin():
    losses = {}
    sampler = _sampler(explore=0.0)
    for b, members in enumerate(sampler.bins):
        for rank, s in enumerate(members):
            losses[s.name()] = float(rank)  # the first of each bin is its best
    sampler._loss = lambda model, s: losses[s.name()]
    drawn = [sampler.next(None) for _ in range(30)]
    assert sampler.summary()["from_bank"] == 1.0
    for b, bank in enumerate(sampler.banks):
        assert len(bank) <= 2 and all(losses[s.name()] <= 1.0 for s in bank) or not bank
    assert all(losses[s.name()] <= 2.0 for s in drawn)  # never the worst of a bin


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("supernet") / "sn"
    train_supernet("vit_lite_2_2_32", "digits", out, epochs=2, pool_size=8, bins=2, lr=2e-3)
    return str(out)


def test_a_stopped_supernet_run_resumes_to_the_same_weights_and_draws(supernet, tmp_path, monkeypatch):
    out = tmp_path / "stopped"
    with monkeypatch.context() as m:
        stop_in_epoch(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train_supernet("vit_lite_2_2_32", "digits", out, epochs=2, pool_size=8, bins=2, lr=2e-3)
    with pytest.raises(UsageError, match=r"bins 2 \(now 3\)"):
        train_supernet("vit_lite_2_2_32", "digits", out, epochs=2, pool_size=8, bins=3, lr=2e-3, resume=True)
    train_supernet("vit_lite_2_2_32", "digits", out, epochs=2, pool_size=8, bins=2, lr=2e-3, resume=True)
    whole, resumed = load_model(supernet), load_model(out)
    for (name, a), b in zip(whole[0].state_dict().items(), resumed[0].state_dict().values()):
        assert torch.equal(a, b), name
    assert whole[1].extra["supernet"]["sampling"] == resumed[1].extra["supernet"]["sampling"]


def test_supernet_checkpoint_records_its_pool_and_sampling(supernet):
    meta = json.load(open(f"{supernet}/meta.json"))
    record = meta["supernet"]
    assert len(record["pool"]) == 8 and record["validation_images"] == 143
    assert record["sampling"]["steps"] == 2 * 21 and sum(record["sampling"]["visits_per_bin"]) == 42
    model, _ = load_model(supernet)
    assert len(model.blocks) == 2  # the largest subnet, an ordinary ViT-Lite


def test_search_extracts_the_best_subnet_within_budget(supernet, tmp_path):
    pool = json.load(open(f"{supernet}/meta.json"))["supernet"]["pool"]
    budget = sorted(p["rounds"] for p in pool)[4]
    meta = search_supernet(supernet, tmp_path / "r", max_rounds=budget)
    found = meta["supernet"]
    assert found["rounds"] <= budget and found["candidates"] == sum(p["rounds"] <= budget for p in pool)
    model, loaded = load_model(tmp_path / "r")
    assert loaded.extra["policy"]["attention"]["layers"]  # the per-layer attentions
    base, _ = load_model(supernet)
    x = loaded.normalization.apply(torch.rand(2, 3, 32, 32))
    with torch.no_grad():  # inherited weights, no fine-tuning: the supernet's subnet (float16 checkpoints)
        assert (model(x) - subnet_forward(base, Subnet.from_dict(found["subnet"]), x)).abs().max() < 1e-2
    assert main(["supernet", "search", "--supernet", supernet, "--max-mb", "0.01", "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(UsageError, match="one budget"):
        search_supernet(supernet, tmp_path / "y")
    with pytest.raises(UsageError, match="give --epochs"):
        search_supernet(supernet, tmp_path / "y", max_rounds=budget, from_scratch=True)
    scratch = search_supernet(supernet, tmp_path / "f", max_rounds=budget, epochs=1, from_scratch=True)["supernet"]
    assert scratch["subnet"] == found["subnet"] and scratch["inherited"] is False
    with pytest.raises(UsageError, match="not a supernet"):
        search_supernet(str(tmp_path / "r"), tmp_path / "z", max_rounds=10**6)


def test_spread_takes_both_ends_and_evenly_spaced_members_between():
    assert spread(7, 4) == {0, 2, 4, 6}
    assert spread(9, 3) == {0, 4, 8}
    assert spread(6, 4) == {0, 2, 3, 5}  # round(5/3) = 2, round(10/3) = 3
    assert spread(3, 4) == {0, 1, 2}
    assert spread(5, 1) == {4}


def test_front_lists_the_undominated_subnets_and_search_returns_each_at_its_rounds(supernet, tmp_path, capsys):
    pool = json.load(open(f"{supernet}/meta.json"))["supernet"]["pool"]
    front = supernet_front(supernet, points=2)
    base, meta = load_model(supernet)
    _, x_val, y_val = hold_out(load_dataset("digits", 32, 3), 0)
    with torch.no_grad():
        accuracy = {Subnet.from_dict(p["subnet"]).name(): float((subnet_forward(
            base, Subnet.from_dict(p["subnet"]), meta.normalization.apply(x_val)).argmax(1) == y_val).float().mean())
            for p in pool}
    assert [r["validation_accuracy"] for r in front] == [accuracy[r["name"]] for r in front]
    rounds = [r["rounds"] for r in front]
    assert rounds == sorted(rounds) and all(a < b for a, b in zip([r["validation_accuracy"] for r in front],
                                                                  [r["validation_accuracy"] for r in front][1:]))
    on_front = {r["name"] for r in front}
    for p in pool:  # every other subnet is at least as costly as a member at least as accurate
        name = Subnet.from_dict(p["subnet"]).name()
        assert name in on_front or any(r["rounds"] <= p["rounds"] and r["validation_accuracy"] >= accuracy[name]
                                       for r in front)
    assert sum(r["chosen"] for r in front) == min(2, len(front)) and front[-1]["chosen"]
    for r in front:  # the member's rounds as the budget: search finds that member
        assert search_supernet(supernet, tmp_path / r["name"], max_rounds=r["rounds"])["supernet"]["name"] == r["name"]
    assert main(["supernet", "front", "--supernet", supernet, "--json", str(tmp_path / "front.json")]) == 0
    assert json.load(open(tmp_path / "front.json")) == supernet_front(supernet)
    assert "Pareto front" in capsys.readouterr().out
    with pytest.raises(UsageError, match="at least 1"):
        supernet_front(supernet, points=0)


def test_subnet_cost_is_what_a_secure_session_measures(supernet, tmp_path):
    from secvit.check import run_check

    meta = search_supernet(supernet, tmp_path / "s", max_mb=10**6)
    base, loaded = load_model(supernet)
    found = Subnet.from_dict(meta["supernet"]["subnet"])
    image = loaded.normalization.apply(torch.rand(1, 3, 32, 32))
    assert subnet_cost(base, found, BUILD, image) == SubnetCost(meta["supernet"]["rounds"], meta["supernet"]["bytes"])
    report = run_check(str(tmp_path / "s"), n=2, mpc_n=1, batch_size=1)
    assert report["rounds_per_forward_mpc"] == meta["supernet"]["rounds"]
    assert report["bytes_per_image_mpc"] == meta["supernet"]["bytes"]
