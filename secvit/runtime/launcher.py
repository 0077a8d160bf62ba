"""Run all parties of a session on this machine, each as its own OS process.

Each party is a ``python -m secvit party ...`` process, exactly what a user starts by
hand on separate hosts; they meet over ``tcp://127.0.0.1:PORT``, each with a throwaway
key and certificate made here for this session (``workdir/keys``). The launcher watches
them: when one dies, the others are stopped and :class:`PartyFailure` names it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from protocols.mpc_runtime.keys import make_keys

from .netem import NetemLink
from .party import check_port_free
from .roles import OWNER, role_name

__all__ = ["PartyFailure", "free_port", "run_local"]


class PartyFailure(RuntimeError):
    """A party process ended with an error."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


def run_local(
    party_args: list[str],
    world_size: int = 2,
    provider: str = "dealer",
    port: int | None = None,
    extra_args: dict[int, list[str]] | None = None,
    timeout_s: float | None = None,
    on_start: Any = None,
    workdir: Path | None = None,
    link: NetemLink | None = None,
    plaintext_channels: bool = False,
) -> dict[int, dict[str, Any]]:
    """Start ``world_size`` parties (plus the dealer) and collect their reports.

    Args:
        party_args: Arguments of ``secvit party`` shared by all parties.
        world_size: Computing parties.
        provider: ``dealer`` (adds a dealer process) or ``TFP``; it must match the
            ``--insecure-tfp`` flag in ``party_args``.
        port: Rendezvous port on 127.0.0.1 (a free one by default).
        extra_args: Per-rank extra arguments.
        timeout_s: Give up (and stop every party) after this long.
        on_start: Called with ``{rank: Popen}`` once all parties are started (tests).
        workdir: Where party logs (``partyR.log``) and reports go (a new temporary
            directory by default).
        link: Run each party in its network namespace (:mod:`secvit.runtime.netem`)
            instead of on loopback.
        plaintext_channels: Run the channels over plain TCP (insecure: the capture
            test's control) instead of TLS with throwaway keys.

    Returns:
        Each computing party's JSON report, by rank.

    Raises:
        PartyFailure: a party failed; its stderr tail is in the message.
        RendezvousError: ``port`` is taken.
    """
    if link and world_size != 2:
        raise ValueError("network emulation runs two computing parties (the dealer shares the owner's namespace)")
    host = link.host if link else "127.0.0.1"
    if link:
        port = port or 29500  # a fresh namespace: every port is free
    elif port is None:
        port = free_port(host)
    else:
        check_port_free(host, port)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="secvit-parties-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ranks = list(range(world_size)) + ([world_size] if provider == "dealer" else [])
    procs: dict[int, subprocess.Popen] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    channel_args = ["--insecure-plaintext-channels"] if plaintext_channels else ["--keys", str(workdir / "keys")]
    if not plaintext_channels:
        for rank in ranks:
            make_keys(workdir / "keys", rank)
    for rank in ranks:
        prefix = link.prefix[OWNER if rank == world_size else rank] if link else []
        cmd = [*prefix, sys.executable, "-m", "secvit", "party", "--rank", str(rank), "--world-size", str(world_size),
               "--rendezvous", f"tcp://{host}:{port}",
               "--result", str(workdir / f"party{rank}.json"), *channel_args, *party_args,
               *(extra_args or {}).get(rank, [])]
        with open(workdir / f"party{rank}.log", "w") as log:
            procs[rank] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if on_start is not None:
        on_start(procs)
    _supervise(procs, world_size, workdir, timeout_s)
    return {r: json.loads((workdir / f"party{r}.json").read_text()) for r in range(world_size)}


def _await_exit(procs: dict[int, subprocess.Popen], grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.1)


def _supervise(procs: dict[int, subprocess.Popen], world_size: int, workdir: Path, timeout_s: float | None) -> None:
    start = time.monotonic()
    try:
        while any(p.poll() is None for p in procs.values()):
            failed = [r for r, p in procs.items() if p.returncode not in (None, 0)]
            if failed:
                break
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise PartyFailure(f"parties did not finish within {timeout_s:.0f} s")
            time.sleep(0.1)
        failed = [r for r, p in procs.items() if p.returncode not in (None, 0)]
        if failed:
            _await_exit(procs, grace_s=30.0)  # the others notice the loss and exit by themselves
            first = failed[0]
            raise PartyFailure(
                f"{role_name(first, world_size)} exited with code {procs[first].returncode}:\n"
                f"{_tail(workdir / f'party{first}.log')}"
            )
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
