"""Secure inference as run by each party.

The owner (rank 0) loads the checkpoint and shares the weights; the client (rank 1)
builds the same architecture on the ``meta`` device (shapes, no values), shares its
images, and alone receives the logits. Both time the encrypted forward passes and
count their own bytes and rounds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from protocols import backend
from protocols.backend import crypten

from .checkpoint import build_model, load_meta, load_model
from .profile.profiler import Profiler
from .rewrite import load_policy
from .runtime.agreement import check_agreement, versions
from .runtime.audit import tensor_fingerprints
from .runtime.dealer import OfflinePhase
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
        model: The owner's loaded model, the policy applied (None on other parties).
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


def _agree(ctx: PartyContext, job: InferenceJob) -> None:
    """Stop unless every process runs the same settings, versions, architecture, policy
    and batch size (before any secret is shared)."""
    policy = asdict(load_policy(job.policy)) if job.policy is not None else None
    check_agreement({"settings": ctx.settings.shared, "versions": versions(),
                     "architecture (meta.json)": load_meta(job.checkpoint).to_dict(), "policy": policy,
                     "batch size": job.batch_size}, backend.gather_all, ctx.world_size)


def _build_plan(ctx: PartyContext, job: InferenceJob) -> tuple[SecurePlan, tuple[int, int, int]]:
    """The owner's plan holds the weights (``job.model``, loaded with the policy); the
    client's is built from ``meta.json`` on the ``meta`` device (shapes, no values)."""
    meta = load_meta(job.checkpoint)
    if ctx.rank == OWNER:
        model = job.model if job.model is not None else load_model(job.checkpoint, job.policy)[0]
    else:
        with torch.device("meta"):
            model = build_model(meta, job.policy)
    return SecurePlan(model), (meta.in_chans, meta.img_size, meta.img_size)


MAX_IMAGES = 1_000_000


def _image_count(ctx: PartyContext, job: InferenceJob) -> int:
    """The client's image count, sent as one int64 and checked against bounds."""
    count = torch.tensor([len(job.images) if ctx.rank == CLIENT else 0], dtype=torch.int64)
    count = int(crypten.comm.get().broadcast(count, CLIENT)[0])
    if not 0 < count <= MAX_IMAGES:
        raise ValueError(f"the client announced {count} images; expected 1 to {MAX_IMAGES}")
    return count


def secure_inference(ctx: PartyContext, job: InferenceJob) -> dict[str, Any]:
    """Run the secure forward over the client's images; returns this party's report.

    Each batch has an offline phase (with a dealer: its correlated randomness is
    prepared, :class:`~secvit.runtime.dealer.OfflinePhase`) and an online phase (input
    sharing, the forward pass, the reveal). The client's report holds ``logits``
    (N x classes); every report holds the online ``seconds``, ``bytes`` and ``rounds``
    (this party's), ``weight_masks`` (bytes and rounds of masking the weights once, at
    load), ``offline`` (seconds, bytes, messages), ``truncations`` (calls,
    elements), ``random_bytes`` (drawn from keyed streams, the dry runs' zeros excluded)
    and ``images``.
    """
    _agree(ctx, job)
    plan, expected = _build_plan(ctx, job)
    offline = OfflinePhase(ctx.rank, ctx.settings.provider == "dealer")
    backend.reset_comm_stats()
    plan.encrypt_weights(ctx.rank, run=offline.run)
    setup = backend.comm_stats()
    job.log(ctx, "weights encrypted and masked")
    job.checkpoint_audit()
    count = _image_count(ctx, job)
    backend.reset_comm_stats()
    truncations, drawn = dict(backend.truncation_stats), backend.random_bytes()
    profiler = Profiler(plan)  # cheap (within run-to-run noise); its records are reported on request
    logits, seconds = [], 0.0
    for start in range(0, count, job.batch_size):
        shape = (min(job.batch_size, count - start), *expected)
        batch = job.images[start : start + job.batch_size] if ctx.rank == CLIENT else None
        offline.prepare(shape, lambda: plan(plan.encrypt_input(None, OWNER, shape)))
        backend.barrier()  # the online phase starts together (not counted as a round)
        began = time.perf_counter()
        with profiler.scope("input.share"):
            x = plan.encrypt_input(batch, ctx.rank, shape)
        with profiler.active():
            y = plan(x, hook=profiler.hook)
        with profiler.scope("output.reveal"):
            out = y.get_plain_text(dst=CLIENT)
        seconds += time.perf_counter() - began
        offline.finish()
        if ctx.rank == CLIENT:
            logits.append(out)
        job.log(ctx, f"{min(start + job.batch_size, count)}/{count} images done")
        job.checkpoint_audit()
    stats = backend.comm_stats()
    report: dict[str, Any] = {"rank": ctx.rank, "images": count, "seconds": seconds,
                              "bytes": stats["bytes"], "rounds": stats["rounds"], "offline": offline.report(),
                              "weight_masks": {"bytes": setup["bytes"], "rounds": setup["rounds"]},
                              "truncations": {k: backend.truncation_stats[k] - truncations[k] for k in truncations},
                              "random_bytes": backend.random_bytes() - drawn,
                              "insecure": ctx.settings.insecure}
    if ctx.rank == CLIENT:
        report["logits"] = torch.cat(logits).tolist()
    if job.profile:
        report["profile"] = profiler.to_list()
    if job.audit:
        job.checkpoint_audit()
        report["audit"] = {"fingerprints": sorted(set().union(*job.audit_points)),
                           "meta_params": all(p.is_meta for p in plan.graph_module.parameters())}
    return report
