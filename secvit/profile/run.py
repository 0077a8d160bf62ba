"""Profile secure inference on this machine: parties as processes, per-node records merged."""

from __future__ import annotations

from .. import session
from ..checkpoint import load_meta
from ..inputs import own_test_images
from ..rewrite import load_policy
from ..runtime.netem import netem_link
from ..network import NetworkProfile, load_network
from .report import ProfileReport, merge_parties

__all__ = ["measure_under_netem", "run_profile"]


def run_profile(checkpoint: str, policy: str | None = None, n: int = 4, batch_size: int | None = None,
                network: str | NetworkProfile = "lan", provider: str = "dealer", threads: int = 1,
                port: int | None = None, truncation: str = "exact") -> ProfileReport:
    """Run the first ``n`` test images of the checkpoint's data through the secure model (one batch by default) with
    the profiler on in every party.

    Raises:
        NetworkError: unknown network profile (before any party starts).
        InputError, CheckpointError, PolicyError: likewise.
        PartyFailure: a party failed.
    """
    net = network if isinstance(network, NetworkProfile) else load_network(network)
    meta = load_meta(checkpoint)
    result = session.run_session(checkpoint, [own_test_images(meta, n)], provider, batch_size or n, threads=threads,
                                 port=port, policy=policy, party_flags=["--profile"], truncation=truncation)
    records = {rank: report["profile"] for rank, report in result.parties.items()}
    parties = {str(rank): {**{k: report[k] for k in ("seconds", "bytes", "rounds")},
                           "offline_seconds": report["offline"]["seconds"], "offline_bytes": report["offline"]["bytes"],
                           "offline_messages": report["offline"]["messages"],
                           "truncated_elements": report["truncations"]["elements"], "insecure": report["insecure"]}
               for rank, report in result.parties.items()}
    policy_name = load_policy(policy).name if policy else (meta.extra.get("policy") or {}).get("name", "exact")
    return ProfileReport(meta.model, policy_name, result.images, batch_size or n, net, parties,
                         merge_parties(records, net), truncation_risk=result.risk)


def measure_under_netem(checkpoint: str, policy: str | None, n: int, network: NetworkProfile,
                        threads: int = 1, provider: str = "dealer", truncation: str = "exact") -> dict[str, float]:
    """Run the same inference with each party in its own network namespace, the link
    shaped by ``network`` (``tc netem`` or the delay line); the measured per-party totals.

    Raises:
        NetemError: namespaces or qdiscs could not be made (root, iproute2, sch_netem).
    """
    images = [own_test_images(load_meta(checkpoint), n)]
    with netem_link(network) as link:
        result = session.run_session(checkpoint, images, provider, n, threads=threads, policy=policy,
                                     link=link, truncation=truncation, risk=False)
    parties = result.parties.values()
    return {"network": network.name, "shaper": link.shaper, "seconds": max(p["seconds"] for p in parties),
            "bytes": max(p["bytes"] for p in parties), "rounds": max(p["rounds"] for p in parties)}
