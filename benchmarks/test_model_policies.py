"""Secure-forward cost of several architectures under the model-agnostic policies.

    pytest benchmarks/test_model_policies.py -m slow -q \
        --benchmark-json=benchmarks/results/model_policies.json

Random weights (seed 0), one image, 2 parties, TFP: cost only (seconds of the forward
inside party 0, and its bytes and rounds, in ``extra_info``). ``mpcvit`` is left out: its
per-head choices are written for ``vit_lite_7_4_32`` (see ``secure_forward.json``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from secvit.models import create_model
from secvit.rewrite import load_policy, rewrite
from secvit.secure.plan import SecurePlan

from .conftest import run_2pc

pytestmark = pytest.mark.slow

MODELS = {
    "vit_lite_1_2_16": ({}, 16),
    "vit_lite_2_2_32": ({}, 32),
    "deit_tiny_patch16_224": ({"img_size": 32, "patch_size": 8, "num_classes": 10}, 32),
    "tiny_vit_5m_224": ({"num_classes": 10}, 64),
}
POLICIES = ("exact", "mpcformer", "relu", "linear")


def _measure(model: torch.nn.Module, size: int) -> dict[str, Any]:
    from protocols import backend

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))

    def party(rank: int) -> dict[str, Any]:
        plan = SecurePlan(model)
        plan.encrypt_weights(rank)
        x = plan.encrypt_input(image if rank == 1 else None, rank, tuple(image.shape))
        backend.reset_comm_stats()
        start = time.perf_counter()
        plan(x)
        seconds = time.perf_counter() - start
        stats = backend.comm_stats()
        return {"seconds": seconds, "bytes": stats["bytes"], "rounds": stats["rounds"]}

    return run_2pc(party)[0]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_policy_cost(benchmark, name: str, policy: str) -> None:
    kwargs, size = MODELS[name]
    torch.manual_seed(0)
    model = rewrite(create_model(name, **kwargs).eval(), load_policy(policy))[0]
    result = benchmark.pedantic(_measure, args=(model, size), rounds=1, iterations=1)
    benchmark.extra_info.update({"model": name, "input": size, "policy": policy, **result})
