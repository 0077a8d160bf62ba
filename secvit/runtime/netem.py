"""Real network emulation: each party in its own Linux network namespace, joined by a
veth pair whose two ends delay (RTT / 2 each way) and rate-limit traffic with ``tc netem``.

Needs root, iproute2 (``ip``, ``tc``) and a kernel with the ``sch_netem`` qdisc;
:func:`unavailable_reason` says what is missing. Two computing parties (TFP) only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterator

from ..profile.network import NetworkProfile

__all__ = ["IFACE", "NetemError", "NetemLink", "netem_link", "unavailable_reason"]

IFACE = "svnet0"  # the veth end's name inside each namespace (GLOO_SOCKET_IFNAME)
_SUBNET = "10.231.0"


class NetemError(RuntimeError):
    """Namespaces or qdiscs could not be set up."""


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _check(*cmd: str) -> None:
    done = _run(*cmd)
    if done.returncode != 0:
        raise NetemError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")


def unavailable_reason(shape: bool = True) -> str | None:
    """Why namespaces (and, with ``shape``, netem qdiscs) cannot be made here; None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (install iproute2)"
    probe = f"svprobe{os.getpid() % 100000}"
    done = _run("ip", "netns", "add", probe)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    try:
        if not shape:
            return None
        _check("ip", "-n", probe, "link", "add", "sva", "type", "veth", "peer", "name", "svb")
        qdisc = _run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "sva", "root", "netem", "delay", "1ms")
        if qdisc.returncode != 0:
            return f"tc netem is not available ({qdisc.stderr.strip()}; the kernel needs sch_netem)"
        return None
    except NetemError as e:
        return str(e)
    finally:
        _run("ip", "netns", "del", probe)


@dataclass(frozen=True)
class NetemLink:
    """Where the parties run: a command prefix per rank and rank 0's address."""

    prefix: dict[int, list[str]]
    host: str
    env: dict[str, str]


@contextlib.contextmanager
def netem_link(network: NetworkProfile | None, tag: str | None = None) -> Iterator[NetemLink]:
    """Two namespaces joined by a veth pair, shaped by ``network`` (None: unshaped).

    Raises:
        NetemError: a step failed (the namespaces made so far are removed).
    """
    tag = tag or str(os.getpid() % 100000)
    names = [f"secvit{tag}p{rank}" for rank in (0, 1)]
    made: list[str] = []
    try:
        for ns in names:
            _check("ip", "netns", "add", ns)
            made.append(ns)
        _check("ip", "-n", names[0], "link", "add", IFACE, "type", "veth", "peer", "name", "peer1",
               "netns", names[1])
        _check("ip", "-n", names[1], "link", "set", "peer1", "name", IFACE)
        for rank, ns in enumerate(names):
            _check("ip", "-n", ns, "addr", "add", f"{_SUBNET}.{rank + 1}/24", "dev", IFACE)
            _check("ip", "-n", ns, "link", "set", IFACE, "up")
            _check("ip", "-n", ns, "link", "set", "lo", "up")
            if network is not None:
                _check("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", IFACE, "root", "netem",
                       "delay", f"{network.rtt_ms / 2:g}ms", "rate", f"{network.bandwidth_mbps:g}mbit")
        yield NetemLink({rank: ["ip", "netns", "exec", ns] for rank, ns in enumerate(names)}, f"{_SUBNET}.1",
                        {"GLOO_SOCKET_IFNAME": IFACE})
    finally:
        for ns in made:
            _run("ip", "netns", "del", ns)
