"""Shared fixtures: a small trained checkpoint and an in-process 2-party MPC runner."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from typing import Any, Callable

import numpy as np
import pytest
import torch

from protocols import backend
from protocols.backend import crypten
import secvit.train as training
from secvit.runtime.agreement import check_agreement, versions
from secvit.runtime.launcher import free_port
from secvit.runtime.party import run_dealer, run_party


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """vit_lite_1_2_16 trained for a few epochs on digits (about 15 s on 2 cores)."""
    from secvit.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(TrainConfig(model="vit_lite_1_2_16", epochs=40, warmup_epochs=1, lr=3e-3), out)
    return str(out)


def _picklable(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(_picklable(v) for v in value)
    if isinstance(value, dict):
        return {k: _picklable(v) for k, v in value.items()}
    return value


def run_2pc(fn: Callable[[int], Any], transport: str = "tls", timeout_s: float = 600.0,
            dealer: bool = False) -> list[Any]:
    """Run ``fn(rank)`` in two forked parties; returns each party's result.

    Without ``dealer``, party 0 deals (TFP). With it, a third process is the dealer of
    [1 of 7] (:func:`secvit.runtime.party.run_dealer`) and ``fn`` prepares each forward
    pass before it runs (:class:`secvit.runtime.dealer.OfflinePhase`). ``transport`` is
    ``tls`` (secvit's channels, throwaway keys) or ``gloo`` (CrypTen's own communicator,
    TFP only: the benchmarks' baseline). Tensors in results come back as numpy arrays
    (torch shared memory does not survive the party process).
    """
    settings = backend.MPCSettings(provider="dealer" if dealer else "TFP")
    backend.configure(settings)
    if transport == "gloo":
        @crypten.mpc.run_multiprocess(world_size=2)
        def party() -> Any:
            torch.set_num_threads(1)
            return _picklable(fn(crypten.comm.get().get_rank()))

        results = party()
        assert results is not None, "a party failed (see the log above)"
        return results
    processes = (0, 1, 2) if dealer else (0, 1)
    keys, port = tempfile.mkdtemp(prefix="secvit-keys-"), free_port()
    for rank in processes:
        backend.make_keys(keys, rank)
    endpoint = backend.Endpoint(f"tcp://127.0.0.1:{port}", keys)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def work(rank: int) -> Any:
        if rank == 2:
            return run_dealer(2, endpoint, settings)
        if not dealer:
            backend.init(settings, rank, 2, endpoint)
            result = fn(rank)
            backend.shutdown()
            return result
        return run_party(lambda ctx: _agreed(ctx, fn), rank, 2, endpoint, settings)

    def child(rank: int) -> None:
        try:
            torch.set_num_threads(1)
            queue.put((rank, _picklable(work(rank)), None))
        except BaseException as e:  # report, never hang the other party
            queue.put((rank, None, f"{type(e).__name__}: {e}"))
        finally:
            queue.close()
            queue.join_thread()  # the result must leave before os._exit
            os._exit(0)

    procs = [context.Process(target=child, args=(rank,)) for rank in processes]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    try:
        for _ in procs:
            rank, value, error = queue.get(timeout=timeout_s)
            assert error is None, f"process {rank} failed: {error}"
            results[rank] = value
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        shutil.rmtree(keys, ignore_errors=True)
    return [results[0], results[1]]


def _agreed(ctx: Any, fn: Callable[[int], Any]) -> Any:
    """``fn(rank)`` after the settings agreement the dealer waits for."""
    check_agreement({"settings": ctx.settings.shared, "versions": versions()}, backend.gather_all, ctx.world_size)
    return fn(ctx.rank)


def as_tensor(value: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(value))


def secure_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on ``x`` under 2-party MPC (owner: rank 0, client: rank 1)."""
    from secvit.secure.plan import SecurePlan

    def party(rank: int):
        plan = SecurePlan(model)
        plan.encrypt_weights(rank)
        return plan(plan.encrypt_input(x if rank == 1 else None, rank, tuple(x.shape))).get_plain_text(dst=1)

    return as_tensor(run_2pc(party)[1])


def spied_step(offline: Any, key: tuple, step: Callable[[], Any]) -> tuple[Any, dict[str, Any], list[torch.Tensor]]:
    """Run ``step`` (secure code) prepared by ``offline`` under ``key``: its result, its
    communication stats, and every tensor this party saw opened or revealed to it (a copy
    of each, in order)."""
    offline.prepare(key, step)
    comm = backend.crypten_comm.get()
    originals, opened = {"all_reduce": comm.all_reduce, "reduce": comm.reduce}, []

    def spy(name: str) -> Callable[..., Any]:
        def spied(*args, **kwargs):
            out = originals[name](*args, **kwargs)
            if out is not None:  # a reveal to another party returns nothing here
                opened.append(out.clone())
            return out
        return spied

    backend.reset_comm_stats()
    for name in originals:
        setattr(comm, name, spy(name))
    try:
        result = step()
    finally:
        for name, original in originals.items():
            setattr(comm, name, original)
    stats = backend.comm_stats()
    offline.finish()
    return result, stats, opened


def in_chans(model: torch.nn.Module) -> int:
    """The input channels of ``model`` (those of its first convolution)."""
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def stop_in_epoch(monkeypatch, epoch: int) -> None:
    """Make the run stop in ``epoch`` (1-based), after the earlier epochs' states were saved."""
    evaluate, calls = training.evaluate, [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == epoch:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", stopping)
