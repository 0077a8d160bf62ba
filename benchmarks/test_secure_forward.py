"""Secure forward of vit_lite_7_4_32 (batch 1, 2 parties, TFP): engine vs hand-written
CrypTen, and the engine under each built-in rewrite policy; and [4 of 7]'s targets: the
shipped checkpoints' online phase with the dealer against CrypTen's exact forward.

    pytest benchmarks/test_secure_forward.py -m slow -q -s -k "not targets" \
        --benchmark-json=benchmarks/results/secure_forward.json
    pytest benchmarks/test_secure_forward.py -m slow -q -s -k targets \
        --benchmark-json=benchmarks/results/targets_dealer.json

Each run forks two CrypTen parties, so the pytest-benchmark time covers setup too; the
figures to read are in ``extra_info``: ``seconds`` (the forward alone, measured inside
party 0), ``bytes`` and ``rounds`` (party 0; ``*_per_party`` lists both parties, counted
from a reset right before the forward) and ``max_abs_logit_error`` against the plaintext
model. The engine must cost no more rounds and bytes than the baseline (and is accurate
where the baseline's erf and inv_sqrt are not); policy runs record cost only. The batch
runs put B images through one forward pass: rounds stay those of one image, and
``images_per_second`` is B over the forward's seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
import torch.nn as nn

from protocols import backend
from secvit.checkpoint import Meta, build_model, load_meta, load_model
from secvit.checkpoint import DEFAULT_CHECKPOINT
from secvit.inputs import load_images
from secvit.rewrite import load_policy, rewrite
from secvit.runtime.dealer import OfflinePhase
from secvit.secure.emulation import emulate
from secvit.secure.plan import SecurePlan

from .conftest import as_tensor, run_2pc
from .handwritten_vit import ViTConfig, encrypt_params, handwritten_forward

pytestmark = pytest.mark.slow

ENGINE, BASELINE = "secvit engine", "hand-written CrypTen"
RESULTS: dict[str, dict[str, Any]] = {}

Runner = Callable[[Callable[[], Any]], None]
Setup = Callable[["Case", int, Runner], Callable[[], Any]]


@dataclass(frozen=True)
class Case:
    """The trained model (owner), its meta skeleton (client), one image and its plain logits."""

    model: nn.Module
    skeleton: nn.Module
    meta: Meta
    image: torch.Tensor
    plain: torch.Tensor

    def model_for(self, rank: int) -> nn.Module:
        return self.model if rank == 0 else self.skeleton


@pytest.fixture(scope="module")
def case() -> Case:
    model, meta = load_model(DEFAULT_CHECKPOINT)
    with torch.device("meta"):
        skeleton = build_model(meta).eval()
    image = load_images(["digits-test:1"], meta)[0]
    with torch.no_grad():
        plain = model(image)
    emulate(model, image)  # the kernels' fitted series, cached here, reach the forked parties
    return Case(model, skeleton, meta, image, plain)


def _measure(case: Case, setup: Setup, reference: nn.Module | None = None,
             images: torch.Tensor | None = None, transport: str = "tls", dealer: bool = False) -> dict[str, Any]:
    """One forward pass of ``setup``'s; with ``dealer``, its online phase (the dealer
    prepared it offline, as in a session)."""
    def party(rank: int) -> tuple[Any, float, int, int]:
        offline = OfflinePhase(rank, dealer)
        forward = setup(case, rank, offline.run)
        offline.prepare(tuple(case.image.shape if images is None else images.shape), forward)
        if transport == "gloo":
            backend.crypten.comm.get().barrier()
        else:
            backend.barrier()
        backend.reset_comm_stats()
        start = time.perf_counter()
        out = forward()
        seconds = time.perf_counter() - start
        stats = backend.comm_stats()
        offline.finish()
        return out.get_plain_text(dst=1), seconds, stats["bytes"], stats["rounds"]

    results = run_2pc(party, transport=transport, dealer=dealer)
    logits = as_tensor(results[1][0])
    if reference is not None or images is not None:
        with torch.no_grad():
            plain = (reference or case.model)(case.image if images is None else images)
    else:
        plain = case.plain
    return {
        "seconds": results[0][1],
        "bytes": results[0][2],
        "rounds": results[0][3],
        "bytes_per_party": [r[2] for r in results],
        "rounds_per_party": [r[3] for r in results],
        "max_abs_logit_error": float((logits - plain).abs().max()),
    }


def _engine(case: Case, rank: int, run: Runner) -> Callable[[], Any]:
    plan = SecurePlan(case.model_for(rank))
    plan.encrypt_weights(rank, run=run)
    x = plan.encrypt_input(case.image if rank == 1 else None, rank, tuple(case.image.shape))
    return lambda: plan(x)


def _handwritten(case: Case, rank: int, run: Runner) -> Callable[[], Any]:
    model = case.model_for(rank)
    params = encrypt_params(model, rank)
    x = SecurePlan.encrypt_input(case.image if rank == 1 else None, rank, tuple(case.image.shape))
    cfg = ViTConfig.from_model(model)
    return lambda: handwritten_forward(params, x, cfg)


@pytest.mark.parametrize("label, setup", [(ENGINE, _engine), (BASELINE, _handwritten)], ids=["engine", "handwritten"])
def test_secure_forward(benchmark, case: Case, label: str, setup: Setup) -> None:
    result = benchmark.pedantic(_measure, args=(case, setup), rounds=1, iterations=1)
    benchmark.extra_info.update({"label": label, **result})
    RESULTS[label] = result
    print(f"\n{label}: {result}")


SHIPPED = {"exact": DEFAULT_CHECKPOINT, "mpcformer": "checkpoints/vit_lite_7_4_32-digits-mpcformer",
           "mpcvit": "checkpoints/vit_lite_7_4_32-digits-mpcvit", "lean": "checkpoints/vit_lite_3_4_32-digits-lean"}
TARGETS = {"exact": (3.0, 120e6, 700), "lean": (10.0, 25e6, 150)}
"""[4 of 7]'s targets: (speed-up over CrypTen's exact forward, bytes, rounds) per party, for
the exact checkpoint and the best MPC-friendly one (``lean``: within 1 point of the exact
checkpoint's accuracy); the other shipped checkpoints are measured beside them."""
TARGET_REPEATS = 5  # each forward's median of 5 (this VM's timings drift by up to 40% within an hour)


def test_targets_against_crypten_with_the_dealer(benchmark, case: Case) -> None:
    """The shipped checkpoints' online phase with the dealer against the hand-written
    CrypTen exact forward's, in one run (batch 1; the median of 5 interleaved runs):
    seconds, bytes and rounds per party, and how far each is from [4 of 7]'s targets
    (recorded, not asserted)."""
    cases = {BASELINE: case}
    for name, path in SHIPPED.items():
        model = load_model(path)[0]
        with torch.device("meta"):
            skeleton = build_model(load_meta(path)).eval()
        with torch.no_grad():
            cases[name] = Case(model, skeleton, case.meta, case.image, model(case.image))

    def run() -> dict[str, dict[str, Any]]:
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in cases}
        for _ in range(TARGET_REPEATS):  # interleaved: the machine's drift hits every label alike
            for label, c in cases.items():
                runs[label].append(_measure(c, _handwritten if label == BASELINE else _engine, dealer=True))
        results = {}
        for label, measured in runs.items():
            seconds = sorted(r["seconds"] for r in measured)
            results[label] = measured[0] | {"seconds": seconds[len(seconds) // 2], "seconds_runs": seconds}
        return results

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    base = results[BASELINE]["seconds"]
    for name in SHIPPED:
        r = results[name]
        r["speedup"] = base / r["seconds"]
        if name in TARGETS:
            speedup, max_bytes, max_rounds = TARGETS[name]
            r |= {"targets": {"speedup": speedup, "bytes": max_bytes, "rounds": max_rounds},
                  "met": {"speedup": r["speedup"] >= speedup, "bytes": r["bytes"] <= max_bytes,
                          "rounds": r["rounds"] <= max_rounds}}
        assert r["max_abs_logit_error"] < 0.05
    benchmark.extra_info.update({"label": "online phase with the dealer vs CrypTen exact", "runs": results})
    for label, r in results.items():
        print(f"\n{label:>22}: {r['seconds']:6.2f} s  {r['bytes'] / 1e6:7.1f} MB  {r['rounds']:5d} rounds"
              + (f"  {r['speedup']:.2f}x" if "speedup" in r else "") + (f"  met {r['met']}" if "met" in r else ""))


def test_engine_vs_handwritten_costs(record_property) -> None:
    engine, baseline = RESULTS.get(ENGINE), RESULTS.get(BASELINE)
    if engine is None or baseline is None:
        pytest.skip("run together with test_secure_forward")
    for label, result in ((ENGINE, engine), (BASELINE, baseline)):
        record_property(label, result)
        print(f"\n{label:>22}: {result['seconds']:6.2f} s  {result['bytes'] / 1e6:7.1f} MB  "
              f"{result['rounds']:5d} rounds  max |logit error| {result['max_abs_logit_error']:.3g}")
    assert engine["bytes"] <= baseline["bytes"] and engine["rounds"] <= baseline["rounds"]
    assert engine["max_abs_logit_error"] < 0.05


@pytest.mark.parametrize("policy", ["exact", "mpcformer", "mpcvit", "relu", "linear", "fast", "lean"])
def test_policy_forward(benchmark, case: Case, policy: str) -> None:
    """The shipped model rewritten by each policy: cost only (the weights are the exact
    model's; fine-tuned accuracies are in the check reports)."""
    chosen = load_policy(policy)
    owner = rewrite(case.model, chosen)[0]
    with torch.device("meta"):
        client = rewrite(case.skeleton, chosen)[0]

    def setup(_: Case, rank: int, run: Runner) -> Callable[[], Any]:
        plan = SecurePlan(owner if rank == 0 else client)
        plan.encrypt_weights(rank, run=run)
        x = plan.encrypt_input(case.image if rank == 1 else None, rank, tuple(case.image.shape))
        return lambda: plan(x)

    result = benchmark.pedantic(_measure, args=(case, setup, owner), rounds=1, iterations=1)
    benchmark.extra_info.update({"label": f"policy {policy}", "policy": policy, **result})


@pytest.mark.parametrize("batch", [1, 2, 4, 8])
def test_batch_throughput(benchmark, case: Case, batch: int) -> None:
    """B images in one encrypted forward pass (the engine, exact model)."""
    images = load_images([f"digits-test:{batch}"], case.meta)[0]

    def setup(_: Case, rank: int, run: Runner) -> Callable[[], Any]:
        plan = SecurePlan(case.model_for(rank))
        plan.encrypt_weights(rank, run=run)
        x = plan.encrypt_input(images if rank == 1 else None, rank, tuple(images.shape))
        return lambda: plan(x)

    result = benchmark.pedantic(_measure, args=(case, setup, None, images), rounds=1, iterations=1)
    benchmark.extra_info.update({"batch": batch, "images_per_second": batch / result["seconds"], **result})
    assert result["max_abs_logit_error"] < 0.05


def test_channels_against_gloo(benchmark, case: Case) -> None:
    """The engine forward (exact model, batch 1) on secvit's TLS channels and on CrypTen's
    gloo communicator (with the same one-message openings), alternating in one run; the
    best of three each."""
    def run() -> dict[str, list[dict[str, Any]]]:
        runs: dict[str, list[dict[str, Any]]] = {"gloo": [], "tls": []}
        for _ in range(3):
            for transport in runs:
                runs[transport].append(_measure(case, _engine, transport=transport))
        return runs

    runs = benchmark.pedantic(run, rounds=1, iterations=1)
    best = {t: min(r["seconds"] for r in results) for t, results in runs.items()}
    ratio = best["tls"] / best["gloo"]
    benchmark.extra_info.update({"label": "TLS channels vs gloo", "gloo_seconds": best["gloo"],
                                 "tls_seconds": best["tls"], "ratio": ratio, "bytes": runs["tls"][0]["bytes"],
                                 "rounds": runs["tls"][0]["rounds"],
                                 "max_abs_logit_error": max(r["max_abs_logit_error"] for r in runs["tls"])})
    print(f"\nforward on loopback: gloo {best['gloo']:.2f} s, TLS channels {best['tls']:.2f} s ({ratio:.2f}x)")
    assert runs["tls"][0]["rounds"] == runs["gloo"][0]["rounds"] and runs["tls"][0]["bytes"] == runs["gloo"][0]["bytes"]
    assert ratio <= 1.1


def test_profiler_overhead(benchmark, case: Case) -> None:
    """The engine forward with and without the profiler, alternating in one session."""
    from secvit.profile.profiler import Profiler

    def party(rank: int) -> dict[str, float]:
        plan = SecurePlan(case.model_for(rank))
        plan.encrypt_weights(rank)
        x = plan.encrypt_input(case.image if rank == 1 else None, rank, tuple(case.image.shape))
        times: dict[str, list[float]] = {"plain": [], "profiled": []}
        for _ in range(3):
            for mode in times:
                profiler = Profiler(plan)
                start = time.perf_counter()
                if mode == "plain":
                    plan(x)
                else:
                    with profiler.active():
                        plan(x, hook=profiler.hook)
                times[mode].append(time.perf_counter() - start)
        return {mode: min(values) for mode, values in times.items()}

    result = benchmark.pedantic(lambda: run_2pc(party)[0], rounds=1, iterations=1)
    overhead = result["profiled"] / result["plain"] - 1
    benchmark.extra_info.update({"label": "profiler overhead", "plain_seconds": result["plain"],
                                 "profiled_seconds": result["profiled"], "overhead": overhead})
    print(f"\nprofiler overhead: {overhead:+.1%} ({result['plain']:.2f} s -> {result['profiled']:.2f} s)")
