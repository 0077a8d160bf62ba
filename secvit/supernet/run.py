"""``secvit supernet train``, ``secvit supernet search`` and ``secvit supernet front``.

Training holds out a tenth of the training split (a seeded draw) for the search and the
sampler's calibration, measures the secure cost of a pool of subnets, and trains the
supernet with :func:`secvit.train.fit`, the sampler choosing each step's subnet. The
checkpoint is the supernet's largest subnet as an ordinary ViT-Lite, with the space, the
pool and its costs in ``meta.json`` (``supernet``). The search ranks the pool's subnets
within a budget by accuracy on the held-out images, extracts the best with its inherited
weights as an ordinary checkpoint (its policy holding the per-layer attentions), and
optionally fine-tunes it. The front lists the pool's subnets that no other beats in both
rounds and held-out accuracy: the budgets at which the search returns different subnets.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
from rich.progress import track
from timm.models.vision_transformer import VisionTransformer

from ..checkpoint import Meta, load_model
from ..data import Dataset, Normalization, load_dataset
from ..errors import UsageError
from ..models import create_model
from ..models.registry import builtin_entry
from ..profile.tradeoff import pareto_front
from ..rewrite.policy import policy_from_dict
from ..train import TrainConfig, fit, model_input, save_evaluated
from ..train_state import TrainingState
from .cost import SubnetCost, subnet_cost
from .sampler import ComplexityAwareSampler
from .space import SearchSpace, Subnet
from .supervit import SuperViT, subnet_args, subnet_forward, subnet_policy, extract

__all__ = ["VALIDATION_SHARE", "search_supernet", "spread", "supernet_front", "train_supernet"]

VALIDATION_SHARE = 0.1
CALIBRATION_IMAGES = 256


def hold_out(data: Dataset, seed: int) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """``data`` without a seeded tenth of its training images, and those images and labels."""
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(len(order) * VALIDATION_SHARE))
    held, kept = order[:cut], order[cut:].sort().values
    train = Dataset(data.name, data.x_train[kept], data.y_train[kept], data.x_test, data.y_test, data.num_classes)
    return train, data.x_train[held], data.y_train[held]


def _pool(space: SearchSpace, size: int, seed: int) -> list[Subnet]:
    """``size`` distinct subnets: the largest, the smallest (scaling attention everywhere)
    and random draws."""
    smallest = Subnet(min(space.depths), min(space.embed_dims), min(space.heads), min(space.mlp_ratios),
                      (space.attentions[-1],) * min(space.depths))
    pool = {space.largest(): None, smallest: None}
    generator = torch.Generator().manual_seed(seed)
    for _ in range(100 * size):
        if len(pool) >= size:
            break
        pool[space.sample(generator)] = None
    return list(pool)


def train_supernet(model: str, data_spec: str, out: str | Path, epochs: int = 40, batch_size: int = 64,
                   lr: float = 1e-3, pool_size: int = 64, bins: int = 6, explore: float = 0.5, seed: int = 0,
                   resume: bool = False, threads: int = 2) -> dict:
    """Train a supernet of the built-in ViT-Lite ``model`` on ``data_spec`` and write it to ``out``;
    ``resume`` continues a stopped run of the same options from its last completed epoch.

    Returns:
        The written ``meta.json`` contents.

    Raises:
        UsageError: not a built-in ViT-Lite, regression data, a pool smaller than the bins, or
            ``resume`` without a stopped run of the same options in ``out``.
    """
    if builtin_entry(model) is None:
        raise UsageError(f"a supernet is a built-in ViT-Lite (secvit models), not {model}")
    if pool_size < bins:
        raise UsageError(f"--pool {pool_size}: at least --bins ({bins}) subnets")
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    img_size, in_chans = model_input(model)
    data = load_dataset(data_spec, img_size, in_chans)
    if data.regression:
        raise UsageError(f"the supernet classifies; {data.name} is regression data")
    train, x_val, y_val = hold_out(data, seed)
    norm = Normalization.fit(train.x_train)
    torch.manual_seed(seed)
    base = create_model(model, num_classes=data.num_classes)
    space = SearchSpace.for_model(base)
    supervit = SuperViT(base, space)
    pool = _pool(space, pool_size, seed)
    build, image = functools.partial(create_model, model), norm.apply(train.x_train[:1])
    costs = [subnet_cost(base, s, build, image) for s in track(pool, description="secure cost of the pool")]
    supervit.sampler = sampler = ComplexityAwareSampler(
        pool, [c.complexity() for c in costs], (norm.apply(x_val[:CALIBRATION_IMAGES]), y_val[:CALIBRATION_IMAGES]),
        bins=bins, explore=explore, seed=seed)
    cfg = TrainConfig(model=model, data=data_spec, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                      threads=threads)
    start = time.perf_counter()
    state = TrainingState(out, {**cfg.__dict__, "pool": pool_size, "bins": bins, "explore": explore})
    fit(supervit, train, norm, cfg, state, resume)
    record = {"space": space.to_dict(), "hold_out_seed": seed, "validation_images": len(y_val),
              "pool": [{"subnet": s.to_dict(), "rounds": c.rounds, "bytes": c.bytes} for s, c in zip(pool, costs)],
              "sampling": {**sampler.summary(), "bins": bins, "explore": explore}}
    meta = Meta(model=model, model_args={"num_classes": data.num_classes}, img_size=img_size, in_chans=in_chans,
                num_classes=data.num_classes, normalization=norm, data=data_spec,
                extra={"supernet": record, "seed": seed, "train_config": cfg.__dict__,
                       "train_seconds": round(time.perf_counter() - start, 1)})
    written = save_evaluated(base.eval(), meta, data, out)
    state.clear()
    return written


def _load_supernet(supernet: str | Path) -> tuple[VisionTransformer, Meta, list[tuple[Subnet, SubnetCost]]]:
    """The largest subnet's model, the meta and the pool (subnets and costs) of a supernet checkpoint."""
    base, meta = load_model(supernet)
    record = meta.extra.get("supernet")
    if record is None or "pool" not in record:
        raise UsageError(f"{supernet} is not a supernet checkpoint (secvit supernet train writes one)")
    return base, meta, [(Subnet.from_dict(p["subnet"]), SubnetCost(p["rounds"], p["bytes"])) for p in record["pool"]]


@torch.no_grad()
def _held_out_accuracy(base: VisionTransformer, meta: Meta, data: Dataset,
                       subnets: list[Subnet]) -> dict[Subnet, float]:
    """Each subnet's accuracy, on the supernet's weights, on the training images of ``data`` it held out."""
    _, x_val, y_val = hold_out(data, meta.extra["supernet"]["hold_out_seed"])
    x = meta.normalization.apply(x_val)
    return {s: float((subnet_forward(base, s, x).argmax(1) == y_val).float().mean()) for s in subnets}


def supernet_front(supernet: str | Path, points: int = 4) -> list[dict]:
    """The Pareto front of the supernet's pool (fewer rounds, higher held-out accuracy), cheapest
    first, ``chosen`` marking ``points`` members spread evenly along it (all when it has no
    more): the budgets at which ``search_supernet`` returns as many different subnets.

    Raises:
        UsageError: ``points`` < 1, or not a supernet checkpoint.
    """
    if points < 1:
        raise UsageError(f"--points {points}: at least 1")
    base, meta, pool = _load_supernet(supernet)
    scores = _held_out_accuracy(base, meta, load_dataset(meta.data, meta.img_size, meta.in_chans),
                                [s for s, _ in pool])
    rows = [{"name": s.name(), "subnet": s.to_dict(), "rounds": c.rounds, "bytes": c.bytes,
             "validation_accuracy": scores[s]} for s, c in pool]
    front = sorted((r for r, keep in zip(rows, pareto_front(rows, "rounds", "validation_accuracy", 0.0)) if keep),
                   key=lambda r: (r["rounds"], r["bytes"]))
    picked = spread(len(front), points)
    return [{**r, "chosen": i in picked} for i, r in enumerate(front)]


def spread(n: int, points: int) -> set[int]:
    """``points`` of the indices ``0..n-1`` evenly spaced, both ends included (the last alone
    when ``points`` is 1; all when ``n`` ≤ ``points``)."""
    if n <= points:
        return set(range(n))
    if points == 1:
        return {n - 1}
    return {round(i * (n - 1) / (points - 1)) for i in range(points)}


def search_supernet(supernet: str, out: str | Path, max_rounds: int | None = None, max_mb: float | None = None,
                    epochs: int = 0, lr: float = 5e-4, seed: int = 0, from_scratch: bool = False,
                    threads: int = 2) -> dict:
    """The most accurate subnet of ``supernet``'s pool within the budget (held-out accuracy),
    extracted to ``out`` (fine-tuned ``epochs`` epochs when > 0). ``from_scratch`` trains the
    same architecture from a fresh initialisation instead (``epochs`` > 0): the baseline of
    training each budget's model on its own.

    Returns:
        The written ``meta.json`` contents (``supernet``: the subnet, its cost and scores).

    Raises:
        UsageError: not exactly one budget, not a supernet checkpoint, or no subnet within the budget.
    """
    if (max_rounds is None) == (max_mb is None):
        raise UsageError("give one budget: --max-rounds R or --max-mb M")
    if from_scratch and epochs <= 0:
        raise UsageError("--from-scratch trains the subnet's architecture anew: give --epochs")
    torch.set_num_threads(threads)
    base, meta, pool = _load_supernet(supernet)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    train = hold_out(data, meta.extra["supernet"]["hold_out_seed"])[0]
    fits = [(s, c) for s, c in pool if (max_rounds is None or c.rounds <= max_rounds)
            and (max_mb is None or c.bytes / 1e6 <= max_mb)]
    if not fits:
        cheapest = min(pool, key=lambda sc: sc[1].complexity())[1]
        raise UsageError(f"no subnet of the pool fits {max_rounds or max_mb} {'rounds' if max_rounds else 'MB'}; the "
                         f"cheapest takes {cheapest.rounds} rounds and {cheapest.bytes / 1e6:.1f} MB")
    scores = _held_out_accuracy(base, meta, data, [s for s, _ in fits])
    best, cost = max(fits, key=lambda sc: (scores[sc[0]], -sc[1].complexity()))
    torch.manual_seed(seed)
    model = extract(base, best, functools.partial(create_model, meta.model), inherit=not from_scratch)
    if epochs:
        fit(model, train, meta.normalization, TrainConfig(model=meta.model, data=meta.data, epochs=epochs, lr=lr,
                                                          warmup_epochs=1, seed=seed, threads=threads))
    found = {"source": str(supernet), "subnet": best.to_dict(), "name": best.name(), "rounds": cost.rounds,
             "bytes": cost.bytes, "budget": {"max_rounds": max_rounds, "max_mb": max_mb},
             "validation_accuracy": scores[best], "candidates": len(fits), "epochs": epochs,
             "inherited": not from_scratch}
    new = Meta(model=meta.model, model_args=subnet_args(base, best), img_size=meta.img_size, in_chans=meta.in_chans,
               num_classes=meta.num_classes, normalization=meta.normalization, data=meta.data,
               extra={"policy": policy_from_dict(subnet_policy(best)).to_dict(), "supernet": found, "seed": seed})
    return save_evaluated(model, new, data, out)
