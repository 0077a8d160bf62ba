"""The dealer's offline/online split against party 0 dealing (TFP), and what keyed
randomness costs, on the shipped checkpoints.

    pytest benchmarks/test_dealer.py -m slow -q --benchmark-json=benchmarks/results/dealer.json

Each case runs real parties (``secvit party`` processes, loopback, 1 thread each) on the
same images in one session per mode:

* ``dealer``: the secure default: a dealer process prepares every correlated value of a
  batch before the batch is shared (offline); truncation is exact (one round each);
* ``tfp-local``: the insecure configuration secvit ran before (party 0 deals during the
  forward pass; CrypTen's local truncation, free and fallible);
* ``tfp-exact``: party 0 deals, exact truncation: the dealer's online rounds without
  the dealer.

``extra_info`` holds, per mode, the online ``seconds`` (per forward pass), ``rounds`` per
forward pass, ``MB`` per image (largest party), the owner's ``offline_seconds`` and
``offline_MB`` per forward pass, and ``online_vs_tfp_local`` (the dealer's online seconds
over the TFP-local seconds). Correctness is asserted (agreement, logit error); speed is
recorded, not asserted.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from protocols.randomness import KeyedStream, new_key
from secvit.session import run_session

pytestmark = pytest.mark.slow

CHECKPOINTS = {"exact": "checkpoints/vit_lite_7_4_32-digits", "mpcformer": "checkpoints/vit_lite_7_4_32-digits-mpcformer"}
MODES = {"dealer": ("dealer", "exact"), "tfp-local": ("TFP", "local"), "tfp-exact": ("TFP", "exact")}


def _run(checkpoint: str, batch: int, mode: str) -> dict[str, Any]:
    provider, truncation = MODES[mode]
    report = run_session(checkpoint, [f"digits-test:{batch}"], provider=provider, batch_size=batch,
                         truncation=truncation)
    summary = report.summary()
    assert summary["agreement"] == 1.0 and summary["max_abs_logit_error"] < 0.05
    owner = summary["offline"]["0"]
    return {"seconds": summary["seconds_per_image"] * batch, "rounds": summary["rounds_per_forward"],
            "MB": summary["bytes_per_image"] / 1e6, "offline_seconds": owner["seconds"],
            "offline_MB": owner["bytes"] / 1e6, "truncated_elements_per_image": summary["truncated_elements_per_image"],
            "random_MB": summary["random_bytes_per_image"] * batch / 1e6}


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("model", sorted(CHECKPOINTS))
def test_dealer_online_against_tfp(benchmark, model: str, batch: int) -> None:
    def measure() -> dict[str, dict[str, Any]]:
        return {mode: _run(CHECKPOINTS[model], batch, mode) for mode in MODES}

    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = result["dealer"]["seconds"] / result["tfp-local"]["seconds"]
    benchmark.extra_info.update({"model": model, "batch": batch, "online_vs_tfp_local": ratio, **result})


def test_keyed_stream_against_torch_generator(benchmark) -> None:
    """Drawing 8 M ring elements (about what one party draws per exact forward pass):
    AES-128-CTR against CrypTen's torch.randint on an MT19937 generator."""
    n = 8_000_000
    stream, generator = KeyedStream(new_key()), torch.Generator().manual_seed(0)

    def measure() -> dict[str, float]:
        began = time.perf_counter()
        stream.ring((n,))
        aes = time.perf_counter() - began
        began = time.perf_counter()
        torch.randint(-(2**63), 2**63 - 1, (n,), generator=generator, dtype=torch.long)
        mt = time.perf_counter() - began
        return {"aes_ctr_seconds": aes, "mt19937_seconds": mt, "aes_GB_per_s": 8 * n / aes / 1e9,
                "mt19937_GB_per_s": 8 * n / mt / 1e9}

    benchmark.extra_info.update(benchmark.pedantic(measure, rounds=3, iterations=1))
