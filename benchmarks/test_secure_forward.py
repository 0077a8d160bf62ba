"""Secure forward of vit_lite_7_4_32 (batch 1, 2 parties, TFP): engine vs hand-written CrypTen.

    make results    # or: pytest benchmarks/test_secure_forward.py -m slow --benchmark-json=...

``extra_info`` holds per-party seconds (the forward alone, measured inside party 0),
bytes and rounds, and the max |logit error| against the plaintext model.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import torch

from protocols import backend
from secvit.checkpoint import load_model
from secvit.cli import DEFAULT_CHECKPOINT
from secvit.inputs import load_images
from secvit.secure.plan import SecurePlan
from tests.conftest import as_tensor, run_2pc

from .handwritten_vit import encrypt_params, handwritten_forward

pytestmark = pytest.mark.slow

MODEL, META = load_model(DEFAULT_CHECKPOINT)
IMAGE = load_images(["digits-test:1"], META)[0]
with torch.no_grad():
    PLAIN = MODEL(IMAGE)
RESULTS: dict[str, dict[str, Any]] = {}


def _measure(setup: Callable[[int], Callable[[], Any]]) -> dict[str, Any]:
    def party(rank: int):
        forward = setup(rank)
        backend.reset_comm_stats()
        start = time.perf_counter()
        out = forward()
        seconds = time.perf_counter() - start
        stats = backend.comm_stats()
        return out.get_plain_text(dst=1), seconds, stats["bytes"], stats["rounds"]

    (_, seconds, nbytes, rounds), (logits, _, client_bytes, client_rounds) = run_2pc(party)
    assert (nbytes, rounds) == (client_bytes, client_rounds)
    return {"seconds": seconds, "bytes": nbytes, "rounds": rounds,
            "max_abs_logit_error": float((as_tensor(logits) - PLAIN).abs().max())}


def _engine(rank: int):
    plan = SecurePlan(MODEL)
    plan.encrypt_weights(rank)
    x = plan.encrypt_input(IMAGE if rank == 1 else None, rank)
    return lambda: plan(x)


def _handwritten(rank: int):
    shapes = {k: v.shape for k, v in MODEL.state_dict().items()}
    params = encrypt_params(MODEL if rank == 0 else None, shapes, rank)
    x = SecurePlan.encrypt_input(IMAGE if rank == 1 else None, rank)
    return lambda: handwritten_forward(params, x, depth=7, heads=4, patch=4)


@pytest.mark.parametrize("label, setup", [("secvit engine", _engine), ("hand-written CrypTen", _handwritten)])
def test_secure_forward(benchmark, label, setup):
    result = benchmark.pedantic(_measure, args=(setup,), rounds=1, iterations=1)
    benchmark.extra_info.update({"label": label, **result})
    RESULTS[label] = result


def test_engine_costs_no_more_than_handwritten():
    engine, baseline = RESULTS.get("secvit engine"), RESULTS.get("hand-written CrypTen")
    if engine is None or baseline is None:
        pytest.skip("run together with test_secure_forward")
    assert engine["rounds"] <= baseline["rounds"] and engine["bytes"] <= baseline["bytes"]
    assert engine["max_abs_logit_error"] < 0.05
