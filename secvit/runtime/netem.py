"""Real network emulation: each party in its own Linux network namespace, the two joined
by a shaped link: a veth pair whose ends delay (RTT / 2 each way) and rate-limit with
``tc netem`` where the kernel has ``sch_netem``, else a TUN device in each namespace and
a userspace delay line between them (:mod:`secvit.runtime.delayline`).

Needs root and iproute2 (``ip``, ``tc``); :func:`unavailable_reason` says what is
missing. Two computing parties (TFP) only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator

from ..network import NetworkProfile
from ..errors import SecvitError

__all__ = ["IFACE", "Host", "NetemError", "NetemLink", "host_network", "netem_link", "shaper", "unavailable_reason"]

IFACE = "svnet0"  # the link's name inside each namespace
_SUBNET = "10.231.0"
_LAN = "10.232.0"


class NetemError(SecvitError, RuntimeError):
    """Namespaces or qdiscs could not be set up."""


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _check(*cmd: str) -> None:
    done = _run(*cmd)
    if done.returncode != 0:
        raise NetemError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")


def _probe(commands: list[list[str]]) -> str | None:
    """Run ``commands`` (``{ns}`` stands for a scratch namespace); the first failure's message."""
    probe = f"svprobe{os.getpid() % 100000}"
    done = _run("ip", "netns", "add", probe)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    try:
        for cmd in commands:
            done = _run(*[part.format(ns=probe) for part in cmd])
            if done.returncode != 0:
                return f"`{' '.join(cmd[-6:])}`: {done.stderr.strip()}"
        return None
    finally:
        _run("ip", "netns", "del", probe)


def shaper() -> str | None:
    """``tc netem``, ``delay line`` (no ``sch_netem``, but TUN devices), or None."""
    veth = ["ip", "-n", "{ns}", "link", "add", "sva", "type", "veth", "peer", "name", "svb"]
    if _probe([veth, ["ip", "netns", "exec", "{ns}", "tc", "qdisc", "add", "dev", "sva", "root", "netem",
                      "delay", "1ms"]]) is None:
        return "tc netem"
    if os.path.exists("/dev/net/tun") and _probe([["ip", "-n", "{ns}", "tuntap", "add", "dev", IFACE,
                                                     "mode", "tun"]]) is None:
        return "delay line"
    return None


def unavailable_reason(shape: bool = True) -> str | None:
    """Why namespaces (and, with ``shape``, a shaped link) cannot be made here; None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (install iproute2)"
    reason = _probe([])
    if reason or not shape:
        return reason
    if shaper() is None:
        return "neither tc netem (the kernel needs sch_netem) nor TUN devices (/dev/net/tun) are available"
    return None


@dataclass(frozen=True)
class NetemLink:
    """Where the parties run: a command prefix per rank, rank 0's address and what shapes
    the link (``tc netem``, ``delay line`` or ``none``)."""

    prefix: dict[int, list[str]]
    host: str
    shaper: str


def _veth(names: list[str], network: NetworkProfile | None) -> None:
    _check("ip", "-n", names[0], "link", "add", IFACE, "type", "veth", "peer", "name", "peer1", "netns", names[1])
    _check("ip", "-n", names[1], "link", "set", "peer1", "name", IFACE)
    if network is not None:
        for ns in names:
            _check("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", IFACE, "root", "netem",
                   "delay", f"{network.rtt_ms / 2:g}ms", "rate", f"{network.bandwidth_mbps:g}mbit")


def _delay_line(names: list[str], network: NetworkProfile) -> subprocess.Popen:
    for ns in names:
        _check("ip", "-n", ns, "tuntap", "add", "dev", IFACE, "mode", "tun")
        _check("ip", "-n", ns, "link", "set", IFACE, "mtu", "65000")
    line = subprocess.Popen([sys.executable, "-m", "secvit.runtime.delayline", *names, IFACE, str(network.rtt_ms),
                             str(network.bandwidth_mbps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if line.stdout.readline().strip() != "ready":
        line.kill()
        raise NetemError(f"the delay line did not start: {line.stderr.read().strip()}")
    return line


@contextlib.contextmanager
def netem_link(network: NetworkProfile | None, tag: str | None = None) -> Iterator[NetemLink]:
    """Two namespaces joined by a link shaped by ``network`` (None: an unshaped veth pair).

    Raises:
        NetemError: a step failed, or nothing can shape the link (the namespaces made so
            far are removed).
    """
    tag = tag or str(os.getpid() % 100000)
    names = [f"secvit{tag}p{rank}" for rank in (0, 1)]
    kind = "none" if network is None else shaper()
    if kind is None:
        raise NetemError(unavailable_reason() or "no link shaper")
    line: subprocess.Popen | None = None
    with _namespaces(names):
        try:
            if kind == "delay line":
                line = _delay_line(names, network)
            else:
                _veth(names, network)
            for rank, ns in enumerate(names):
                _bring_up(ns, f"{_SUBNET}.{rank + 1}")
            yield NetemLink({rank: ["ip", "netns", "exec", ns] for rank, ns in enumerate(names)}, f"{_SUBNET}.1",
                            kind)
        finally:
            if line is not None:
                line.kill()
                line.wait()


@contextlib.contextmanager
def _namespaces(names: list[str]) -> Iterator[None]:
    """Create the network namespaces ``names``; remove those made, whatever happens."""
    made: list[str] = []
    try:
        for ns in names:
            _check("ip", "netns", "add", ns)
            made.append(ns)
        yield
    finally:
        for ns in made:
            _run("ip", "netns", "del", ns)


def _bring_up(ns: str, address: str) -> None:
    """Give namespace ``ns``'s link ``address`` (/24) and bring it and loopback up."""
    _check("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", IFACE)
    _check("ip", "-n", ns, "link", "set", IFACE, "up")
    _check("ip", "-n", ns, "link", "set", "lo", "up")


@dataclass(frozen=True)
class Host:
    """One emulated host: the command prefix that runs inside it, and its address."""

    prefix: list[str]
    address: str


@contextlib.contextmanager
def host_network(count: int, tag: str | None = None) -> Iterator[list[Host]]:
    """``count`` hosts, each its own network namespace, on one unshaped LAN (a bridge in
    a hub namespace): the README's multi-host examples run in them as written.

    Raises:
        NetemError: a step failed (what was made is removed).
    """
    tag = tag or str(os.getpid() % 100000)
    hub, names = f"secvit{tag}hub", [f"secvit{tag}h{i}" for i in range(count)]
    with _namespaces([hub, *names]):
        _check("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        _check("ip", "-n", hub, "link", "set", "br0", "up")
        for i, ns in enumerate(names):
            _check("ip", "-n", hub, "link", "add", f"port{i}", "type", "veth", "peer", "name", IFACE, "netns", ns)
            _check("ip", "-n", hub, "link", "set", f"port{i}", "master", "br0", "up")
            _bring_up(ns, f"{_LAN}.{i + 1}")
        yield [Host(["ip", "netns", "exec", ns], f"{_LAN}.{i + 1}") for i, ns in enumerate(names)]
