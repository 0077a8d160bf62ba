"""Every registered protocol at a few sizes (2 parties, TFP, one forked session each).

    pytest benchmarks/test_protocols.py -m slow -q --benchmark-json=benchmarks/results/protocols.json

Rows of 64 for the softmax and norm kinds, flat vectors for activations. The
pytest-benchmark time covers forking the parties; the figures to read are in
``extra_info`` per size: ``seconds`` (the best of 3 calls, inside party 0), ``bytes``
and ``rounds`` of one call (party 0), and per element ``bytes_per_element`` and
``microseconds_per_element``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

import protocols
from protocols import backend
from protocols.backend import crypten
from protocols.stationary import fix_masks

from .conftest import run_2pc

pytestmark = pytest.mark.slow

SIZES = (1024, 16384)
ROW = 64


def _input(name: str, numel: int) -> dict[str, torch.Tensor]:
    p = protocols.get(name)
    lo, hi = p.valid_range
    shape = (numel,) if p.kind == "activation" else (numel // ROW, ROW)
    g = torch.Generator().manual_seed(0)
    args = {"x": torch.rand(shape, generator=g) * (hi - lo) + lo}
    if p.kind == "norm":
        args |= {"weight": torch.randn(ROW, generator=g), "bias": torch.randn(ROW, generator=g)}
    return args


def _measure(name: str) -> list[dict[str, Any]]:
    def party(rank: int) -> list[dict[str, Any]]:
        p, rows = protocols.get(name), []
        for numel in SIZES:
            inputs = _input(name, numel)
            enc = {k: crypten.cryptensor(v, src=0) for k, v in inputs.items()}
            x = enc.pop("x")
            if "weight" in enc:  # a norm's weight: the owner's, masked once at load (the secure plan's way)
                fix_masks([enc["weight"]], 0, [inputs["weight"]] if rank == 0 else None)
            best = float("inf")
            for _ in range(3):
                backend.reset_comm_stats()
                start = time.perf_counter()
                p.secure(x, **enc)
                best = min(best, time.perf_counter() - start)
                stats = backend.comm_stats()
            rows.append({"elements": numel, "seconds": best, "bytes": stats["bytes"], "rounds": stats["rounds"],
                         "bytes_per_element": stats["bytes"] / numel,
                         "microseconds_per_element": best / numel * 1e6})
        return rows

    return run_2pc(party)[0]


@pytest.mark.parametrize("name", protocols.names())
def test_protocol_cost(benchmark, name: str) -> None:
    rows = benchmark.pedantic(_measure, args=(name,), rounds=1, iterations=1)
    benchmark.extra_info.update({"protocol": name, "kind": protocols.get(name).kind, "sizes": rows})
    counted = protocols.get(name).total_cost(tuple(_input(name, SIZES[-1])["x"].shape))
    assert (rows[-1]["rounds"], rows[-1]["bytes"]) == (counted.rounds, counted.bytes)
