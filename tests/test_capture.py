"""What a listener on the path records: a relay in front of every listening party
captures every byte of a whole session (owner, client, dealer), both ways.

Over secvit's channels the capture holds no weight, no image, no logit and none of the
session's keys (``SECVIT_KEYLOG`` tells the test what they were), and every connection
parses as TLS records that are application data after the first hello: nothing else
crosses in the clear. The control runs the same session over plain TCP
(``--insecure-plaintext-channels``): there the same search finds the keys, so the search
can fail. A party whose certificate nobody listed is refused with one line naming the
address, and so is it by the party it tried to reach.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from secvit.checkpoint import load_meta, load_model
from secvit.inputs import load_images
from secvit.runtime.launcher import free_port, run_local

IMAGES = "digits-test:2"


class Relay:
    """Forwards every connection made to its port to ``target``, recording both directions."""

    def __init__(self, target: int):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.streams: list[tuple[bytearray, bytearray]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inbound, _ = self.listener.accept()
            except OSError:
                return
            outbound = self._reach_target()
            if outbound is None:
                inbound.close()
                continue
            record = (bytearray(), bytearray())
            self.streams.append(record)
            for src, dst, buf in ((inbound, outbound, record[0]), (outbound, inbound, record[1])):
                threading.Thread(target=self._pump, args=(src, dst, buf), daemon=True).start()

    def _reach_target(self) -> socket.socket | None:
        """A connection to the target, waiting up to 30 s for it to listen."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                return socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                time.sleep(0.05)
        return None

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        while True:
            try:
                data = src.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                for s in (dst, src):
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            buf.extend(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


def _session(ckpt: str, tmp: Path, plaintext: bool, monkeypatch) -> tuple[list[bytes], dict, list[bytes]]:
    """Run owner, client and dealer with relays in front of rank 0 and rank 1; returns the
    captured streams, the client's report and the keys the keylog recorded."""
    keylog = tmp / "keylog"
    monkeypatch.setenv("SECVIT_KEYLOG", str(keylog))
    owner_port, client_port = free_port(), free_port()
    relays = [Relay(owner_port), Relay(client_port)]
    via = f"tcp://127.0.0.1:{relays[0].port}"
    try:
        reports = run_local(["--checkpoint", ckpt, "--batch-size", "2"], port=owner_port, timeout_s=240,
                            workdir=tmp / "parties", plaintext_channels=plaintext,
                            extra_args={1: ["--input", IMAGES, "--rendezvous", via,
                                            "--listen", f"127.0.0.1:{client_port}",
                                            "--advertise", f"127.0.0.1:{relays[1].port}"],
                                        2: ["--rendezvous", via]})
    finally:
        for relay in relays:
            relay.close()
    keys = [bytes.fromhex(line.split()[2]) for line in keylog.read_text().splitlines()]
    streams = [bytes(b) for relay in relays for pair in relay.streams for b in pair]
    return streams, reports[1], keys


def _needles(ckpt: str) -> dict[str, list[bytes]]:
    """Byte patterns of the secrets: the weights and the image as float32 and as 16-bit
    fixed-point int64, four distinct non-zero elements per pattern."""
    model, _ = load_model(ckpt)
    image = load_images([IMAGES], load_meta(ckpt))[0]

    def patterns(t: torch.Tensor) -> list[bytes]:
        flat = t.detach().flatten()
        for start in range(0, flat.numel() - 3):
            window = flat[start:start + 4]
            if (window != 0).all() and window.unique().numel() == 4:
                fixed = (window.double() * 2**16).round().long()
                return [window.float().numpy().tobytes(), fixed.numpy().tobytes()]
        return []

    weights = [p for _, t in model.state_dict().items() if t.numel() >= 4 for p in patterns(t)]
    return {"weights": weights, "image": patterns(image)}


def _tls_records(stream: bytes) -> list[int] | None:
    """The record types of a TLS stream, or None if it is not one."""
    types, offset = [], 0
    while offset < len(stream):
        if len(stream) - offset < 5:
            return None
        kind, version, length = struct.unpack(">BHH", stream[offset:offset + 5])
        if kind not in (20, 21, 22, 23) or version not in (0x0301, 0x0303):
            return None
        types.append(kind)
        offset += 5 + length
    return types if offset == len(stream) else None


def test_a_recorded_session_shows_no_secret(tiny_ckpt, tmp_path, monkeypatch):
    streams, client, keys = _session(tiny_ckpt, tmp_path, plaintext=False, monkeypatch=monkeypatch)
    model, _ = load_model(tiny_ckpt)
    with torch.no_grad():
        plain = model(load_images([IMAGES], load_meta(tiny_ckpt))[0])
    logits = torch.tensor(client["logits"])
    assert (logits - plain).abs().max() < 0.05, "the relayed session gave wrong logits"
    assert len(streams) == 2 * 6  # owner-client, owner-dealer, client-dealer: data and control each
    assert sum(map(len, streams)) > 1e6 and len(keys) >= 6

    needles = {**_needles(tiny_ckpt), "keys": keys, "logits": [logits[0, :4].numpy().tobytes()]}
    for name, patterns in needles.items():
        assert patterns, f"no {name} pattern to search for"
        found = [p for p in patterns for s in streams if p in s]
        assert not found, f"{name} found on the wire"
    for stream in streams:
        types = _tls_records(stream)
        assert types is not None, "a connection carried something that is not TLS"
        first_data = types.index(23)
        assert set(types[first_data:]) == {23}, "a record after the handshake was not encrypted application data"


def test_control_the_same_search_finds_the_keys_on_plain_tcp(tiny_ckpt, tmp_path, monkeypatch):
    streams, client, keys = _session(tiny_ckpt, tmp_path, plaintext=True, monkeypatch=monkeypatch)
    assert "plaintext channels" in " ".join(client["insecure"])
    assert keys and all(any(k in s for s in streams) for k in keys), "the search missed keys sent in clear"
    assert any(_tls_records(s) is None for s in streams)


def test_a_party_with_an_unlisted_certificate_is_refused(tiny_ckpt, tmp_path):
    from protocols.mpc_runtime.keys import cert_path, make_keys

    listed, stranger = tmp_path / "listed", tmp_path / "stranger"
    for rank in (0, 1):
        make_keys(listed, rank)
    make_keys(stranger, 1)
    (stranger / "party0.crt").write_bytes(cert_path(listed, 0).read_bytes())
    port = free_port()
    common = [sys.executable, "-m", "secvit", "party", "--insecure-tfp", "--rendezvous", f"tcp://127.0.0.1:{port}",
              "--checkpoint", tiny_ckpt, "--timeout", "8"]
    owner = subprocess.Popen([*common, "--rank", "0", "--keys", str(listed)], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    intruder = subprocess.run([*common, "--rank", "1", "--keys", str(stranger), "--input", IMAGES],
                              capture_output=True, text=True, timeout=60)
    _, owner_err = owner.communicate(timeout=60)
    assert intruder.returncode == 2
    lines = intruder.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "certificate" in lines[0], intruder.stderr
    refusal = [line for line in owner_err.splitlines() if "refused a connection from 127.0.0.1:" in line]
    assert refusal and "certificate is not one this party lists" in refusal[0], owner_err
    assert owner.returncode == 2 and "did not form within 8 s" in owner_err.strip().splitlines()[-1]
