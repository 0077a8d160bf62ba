"""Profile secure inference on this machine: parties as processes, per-node records merged."""

from __future__ import annotations

from .. import session
from ..checkpoint import load_meta
from .network import NetworkProfile, load_network
from .report import ProfileReport, merge_parties

__all__ = ["run_profile"]


def run_profile(checkpoint: str, policy: str | None = None, n: int = 4, batch_size: int | None = None,
                network: str | NetworkProfile = "lan", provider: str = "TFP", threads: int = 1,
                port: int | None = None) -> ProfileReport:
    """Run ``n`` digits test images through the secure model (one batch by default) with
    the profiler on in every party.

    Raises:
        NetworkError: unknown network profile (before any party starts).
        InputError, CheckpointError, PolicyError: likewise.
        PartyFailure: a party failed.
    """
    net = network if isinstance(network, NetworkProfile) else load_network(network)
    meta = load_meta(checkpoint)
    result = session.run_session(checkpoint, [f"digits-test:{n}"], provider, batch_size or n, threads=threads,
                                 port=port, policy=policy, party_flags=["--profile"])
    records = {rank: report["profile"] for rank, report in result.parties.items()}
    parties = {str(rank): {k: report[k] for k in ("seconds", "bytes", "rounds")}
               for rank, report in result.parties.items()}
    policy_name = policy or (meta.extra.get("policy") or {}).get("name", "exact")
    return ProfileReport(meta.model, policy_name, result.images, batch_size or n, net, parties,
                         merge_parties(records, net))
