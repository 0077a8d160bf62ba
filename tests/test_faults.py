"""A certified peer that misbehaves: a dealer (this test, holding the dealer's real key)
that answers the owner's request table with a malformed or an oversized frame. The owner
refuses the frame before reading its payload and stops with one line naming the cause;
the client stops at once with the owner's message. Nothing hangs."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from protocols.mpc_runtime.channels import _HEADER, _MAGIC, TAGS, Frame, exchange
from protocols.mpc_runtime.keys import Keyring, make_keys
from protocols.mpc_runtime.mesh import connect_mesh
from secvit.runtime.agreement import digest_table
from secvit.runtime.launcher import free_port
from secvit.runtime.roles import role_name


def _rogue_dealer(keys, port: int, answer: bytes) -> None:
    """Join as the dealer, hand out keys, pass the agreement, then ``answer`` the owner."""
    mesh = connect_mesh(2, 3, ("127.0.0.1", port), Keyring.load(keys, 2, [0, 1]), 60, name=lambda r: role_name(r, 2))
    table = digest_table({})
    for rank in (0, 1):
        mesh.data[rank].queue("tensor", bytes(16))  # a stream key
        mesh.data[rank].queue("tensor", table.numpy().tobytes())
        mesh.data[rank].expect(Frame("tensor", limit=table.numel() * 8))
    exchange(mesh.data.values(), 60)
    mesh.data[0].expect(Frame("tensor", limit=16))  # the request table's header, then the table
    mesh.data[0].expect(Frame("tensor", limit=1 << 30))
    exchange([mesh.data[0]], 60)
    mesh.data[0]._out.append(memoryview(answer))
    exchange([mesh.data[0]], 10, receive=False)
    time.sleep(15)  # stay connected: the parties must stop because of the frame, not a closed link
    mesh.close()


@pytest.mark.parametrize("fault, answer, message", [
    ("oversized", _HEADER.pack(_MAGIC, TAGS["tensor"], 16) + torch.tensor([1, 1 << 37]).numpy().tobytes()
     + _HEADER.pack(_MAGIC, TAGS["tensor"], 1 << 40), "oversized frame from party 2 (dealer)"),
    ("malformed", _HEADER.pack(_MAGIC, TAGS["tensor"], 24) + bytes(24), "malformed frame from party 2 (dealer)"),
])
def test_a_bad_frame_from_a_certified_peer_ends_every_party_with_its_cause(tiny_ckpt, tmp_path, fault, answer,
                                                                        message):
    import threading

    for rank in range(3):
        make_keys(tmp_path, rank)
    port = free_port()
    base = [sys.executable, "-m", "secvit", "party", "--rendezvous", f"tcp://127.0.0.1:{port}", "--keys",
            str(tmp_path), "--checkpoint", tiny_ckpt, "--timeout", "30"]
    owner = subprocess.Popen([*base, "--rank", "0"], stderr=subprocess.PIPE, text=True)
    client = subprocess.Popen([*base, "--rank", "1", "--input", "digits-test:1"], stderr=subprocess.PIPE, text=True)
    rogue = threading.Thread(target=_rogue_dealer, args=(tmp_path, port, answer), daemon=True)
    began = time.monotonic()
    rogue.start()
    owner_err = owner.communicate(timeout=60)[1].strip().splitlines()
    client_err = client.communicate(timeout=60)[1].strip().splitlines()
    assert time.monotonic() - began < 30
    assert owner.returncode == 1 and len(owner_err) == 1 and message in owner_err[0], owner_err
    assert client.returncode != 0 and f"party 0 (owner) failed: ChannelError: {message}" in client_err[-1], client_err
