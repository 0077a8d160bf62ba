"""Secure inference as run by each party.

The owner (rank 0) loads the checkpoint and shares the weights; the client (rank 1)
builds the same architecture on the ``meta`` device (shapes, no values), shares its
images, and alone receives the logits. Both time the encrypted forward passes and
count their own bytes and rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from protocols import backend
from protocols.backend import crypten

from .checkpoint import build_model, load_meta, load_model
from .profile.profiler import Profiler
from .rewrite import load_policy, rewrite
from .runtime.audit import tensor_fingerprints
from .runtime.party import PartyContext
from .runtime.roles import CLIENT, OWNER
from .secure.plan import SecurePlan

__all__ = ["InferenceJob", "secure_inference"]


@dataclass
class InferenceJob:
    """One party's share of a secure inference session.

    Attributes:
        checkpoint: Checkpoint directory; the client reads only its ``meta.json``.
        policy: Rewrite policy applied on top of the checkpoint (public; every party
            applies it to its own copy of the architecture).
        model: The owner's loaded model (None on other parties).
        images: The client's normalised images (None on other parties).
        batch_size: Images per encrypted forward pass.
        audit: Record custody fingerprints in the result (tests).
        verbose: Print a line per stage (weights encrypted, each batch done).
        profile: Record per-node costs (:class:`~secvit.profile.profiler.Profiler`) in
            the report's ``profile``; their sums equal the report's totals.
    """

    checkpoint: str
    policy: str | None = None
    model: torch.nn.Module | None = None
    images: torch.Tensor | None = None
    batch_size: int = 8
    audit: bool = False
    verbose: bool = False
    profile: bool = False
    audit_points: list[set[str]] = field(default_factory=list)

    def log(self, ctx: PartyContext, message: str) -> None:
        if self.verbose:
            print(f"{ctx.name}: {message}", flush=True)

    def checkpoint_audit(self) -> None:
        if self.audit:
            self.audit_points.append(tensor_fingerprints())


def _build_plan(ctx: PartyContext, job: InferenceJob) -> tuple[SecurePlan, tuple[int, int, int]]:
    meta = load_meta(job.checkpoint)
    if ctx.rank == OWNER:
        model = job.model if job.model is not None else load_model(job.checkpoint)[0]
    else:
        with torch.device("meta"):
            model = build_model(meta)
    if job.policy is not None:
        with torch.device("meta" if ctx.rank != OWNER else "cpu"):
            model = rewrite(model, load_policy(job.policy))[0]
    return SecurePlan(model), (meta.in_chans, meta.img_size, meta.img_size)


def secure_inference(ctx: PartyContext, job: InferenceJob) -> dict[str, Any]:
    """Run the secure forward over the client's images; returns this party's report.

    The client's report holds ``logits`` (N x classes); every report holds ``seconds``
    (encrypted forward, inputs sharing and reveal included), ``bytes`` and ``rounds``
    (this party's), and ``images``.
    """
    plan, expected = _build_plan(ctx, job)
    plan.encrypt_weights(ctx.rank)
    job.log(ctx, "weights encrypted")
    job.checkpoint_audit()
    count = crypten.comm.get().broadcast_obj(len(job.images) if ctx.rank == CLIENT else None, CLIENT)
    backend.reset_comm_stats()
    profiler = Profiler(plan)  # cheap (within run-to-run noise); its records are reported on request
    logits, seconds = [], 0.0
    for start in range(0, count, job.batch_size):
        batch = job.images[start : start + job.batch_size] if ctx.rank == CLIENT else None
        began = time.perf_counter()
        with profiler.scope("input.share"):
            x = plan.encrypt_input(batch, ctx.rank)
        if tuple(x.size()[1:]) != expected:
            raise ValueError(f"client sent images of shape {tuple(x.size())}; expected (N, *{expected})")
        with profiler.active():
            y = plan(x, hook=profiler.hook)
        with profiler.scope("output.reveal"):
            out = y.get_plain_text(dst=CLIENT)
        seconds += time.perf_counter() - began
        if ctx.rank == CLIENT:
            logits.append(out)
        job.log(ctx, f"{min(start + job.batch_size, count)}/{count} images done")
        job.checkpoint_audit()
    stats = backend.comm_stats()
    report: dict[str, Any] = {"rank": ctx.rank, "images": count, "seconds": seconds,
                              "bytes": stats["bytes"], "rounds": stats["rounds"]}
    if ctx.rank == CLIENT:
        report["logits"] = torch.cat(logits).tolist()
    if job.profile:
        report["profile"] = profiler.to_list()
    if job.audit:
        job.checkpoint_audit()
        report["audit"] = {"fingerprints": sorted(set().union(*job.audit_points)),
                           "meta_params": all(p.is_meta for p in plan.graph_module.parameters())}
    return report
