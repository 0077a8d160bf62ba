"""The session's channels: TLS with mutual certificates, framing, and the faults each
must turn into one clear line (in-process: each rank a thread)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from protocols.mpc_runtime.channels import ChannelError, Frame, exchange, tensor_bytes
from protocols.mpc_runtime.keys import Keyring, KeyringError, cert_path, make_keys
from protocols.mpc_runtime.mesh import Mesh, MeshError, connect_mesh
from secvit.runtime.launcher import free_port


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for rank in range(3):
        make_keys(tmp_path, rank)
    return tmp_path


def _keyring(directory: Path, rank: int, total: int) -> Keyring:
    return Keyring.load(directory, rank, [r for r in range(total) if r != rank])


def _in_threads(calls: dict[int, Callable[[], Any]]) -> dict[int, Any]:
    """Run each call in its own thread; returns values or the exceptions raised."""
    out: dict[int, Any] = {}

    def run(key: int, call: Callable[[], Any]) -> None:
        try:
            out[key] = call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out[key] = e

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def _mesh(keys: Path, total: int, port: int, timeout_s: float = 20.0) -> dict[int, Mesh]:
    meshes = _in_threads({r: (lambda r=r: connect_mesh(r, total, ("127.0.0.1", port), _keyring(keys, r, total),
                                                        timeout_s)) for r in range(total)})
    for value in meshes.values():
        assert isinstance(value, Mesh), value
    return meshes


def test_three_processes_form_a_mesh_and_exchange_large_tensors_both_ways(keys):
    meshes = _mesh(keys, 3, free_port())
    n = 3_000_000  # 24 MB each way: more than any socket buffer, so sends and receives must interleave

    def swap(rank: int) -> dict[int, int]:
        mesh, mine, got = meshes[rank], torch.full((n,), rank + 10, dtype=torch.int64), {}
        for peer, channel in mesh.data.items():
            channel.queue("tensor", tensor_bytes(mine))
            got[peer] = torch.empty(n, dtype=torch.int64)
            channel.expect(Frame("tensor", tensor_bytes(got[peer])))
        exchange(mesh.data.values(), 20)
        return {peer: int(t.unique().item()) for peer, t in got.items()}

    results = _in_threads({r: (lambda r=r: swap(r)) for r in range(3)})
    try:
        for rank in range(3):
            assert results[rank] == {p: p + 10 for p in range(3) if p != rank}
            assert sorted(meshes[rank].control) == [p for p in range(3) if p != rank]
    finally:
        for mesh in meshes.values():
            mesh.close()


def test_an_unlisted_certificate_is_refused_and_the_session_still_forms(tmp_path, keys, capfd):
    stranger = tmp_path / "stranger"
    make_keys(stranger, 1)  # a key of its own, for rank 1, that nobody listed
    for rank in (0, 2):
        (stranger / cert_path("", rank).name).write_text(cert_path(keys, rank).read_text())
    port = free_port()
    owner = threading.Thread(target=lambda: results.update(
        owner=connect_mesh(0, 2, ("127.0.0.1", port), _keyring(keys, 0, 2), 20)))
    results: dict[str, Any] = {}
    owner.start()
    with pytest.raises(MeshError, match=rf"127\.0\.0\.1:{port}"):
        connect_mesh(1, 2, ("127.0.0.1", port), _keyring(stranger, 1, 2), 10)
    client = connect_mesh(1, 2, ("127.0.0.1", port), _keyring(keys, 1, 2), 10)  # the real one is let in
    owner.join(timeout=20)
    assert isinstance(results["owner"], Mesh)
    refusals = [line for line in capfd.readouterr().err.splitlines() if "refused a connection" in line]
    assert refusals and "certificate" in refusals[0] and "127.0.0.1:" in refusals[0]
    client.close()
    results["owner"].close()


def test_a_listed_certificate_cannot_speak_for_another_rank(keys, tmp_path):
    """Party 1's own, valid key cannot join as the dealer (rank 2)."""
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    for suffix in ("key", "crt"):  # party 1's key and certificate, filed under rank 2
        (impostor / f"party2.{suffix}").write_bytes((keys / f"party1.{suffix}").read_bytes())
    for rank in (0, 1):
        (impostor / f"party{rank}.crt").write_bytes((keys / f"party{rank}.crt").read_bytes())
    port = free_port()
    out = _in_threads({0: lambda: connect_mesh(0, 3, ("127.0.0.1", port), _keyring(keys, 0, 3), 6),
                       1: lambda: connect_mesh(1, 3, ("127.0.0.1", port), _keyring(keys, 1, 3), 6),
                       2: lambda: connect_mesh(2, 3, ("127.0.0.1", port), _keyring(impostor, 2, 3), 6)})
    assert isinstance(out[2], MeshError)
    assert isinstance(out[0], MeshError) and "did not form" in str(out[0])  # the dealer never came


def test_missing_key_files_are_named(tmp_path):
    make_keys(tmp_path, 0)
    with pytest.raises(KeyringError, match="party1.crt"):
        Keyring.load(tmp_path, 0, [1])
    with pytest.raises(FileExistsError):
        make_keys(tmp_path, 0)


def test_port_in_use_is_one_line(keys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MeshError, match="port already in use"):
            connect_mesh(0, 2, ("127.0.0.1", port), _keyring(keys, 0, 2), 5)


@pytest.fixture
def pair(keys) -> tuple[Mesh, Mesh]:
    meshes = _mesh(keys, 2, free_port())
    yield meshes[0], meshes[1]
    for mesh in meshes.values():
        mesh.close()


def _send_raw(mesh: Mesh, tag: str, payload: bytes) -> None:
    mesh.data[1 - mesh.rank].queue(tag, payload)
    exchange(mesh.data.values(), 5, receive=False)


def _expect(mesh: Mesh, frame: Frame, timeout_s: float = 5) -> None:
    mesh.data[1 - mesh.rank].expect(frame)
    exchange(mesh.data.values(), timeout_s)


def test_a_frame_of_the_wrong_size_is_refused(pair):
    a, b = pair
    _send_raw(a, "tensor", bytes(24))
    with pytest.raises(ChannelError, match=r"malformed frame from party 0 .*24 bytes where 16 were due"):
        _expect(b, Frame("tensor", tensor_bytes(torch.zeros(2, dtype=torch.int64))))


def test_an_oversized_frame_is_refused_before_its_payload_is_read(pair):
    a, b = pair
    a.data[1].sock.setblocking(True)
    a.data[1].sock.sendall(b"TIVS" + (1).to_bytes(4, "little") + (1 << 40).to_bytes(8, "little"))  # 1 TB announced
    with pytest.raises(ChannelError, match=r"oversized frame from party 0 .*1099511627776 bytes, at most 64"):
        _expect(b, Frame("tensor", limit=64))


def test_a_frame_of_another_kind_is_refused(pair):
    a, b = pair
    _send_raw(a, "control", b"h")
    with pytest.raises(ChannelError, match="expected a tensor frame, got control"):
        _expect(b, Frame("tensor", limit=64))


def test_garbage_is_refused(pair):
    a, b = pair
    a.data[1].sock.setblocking(True)
    a.data[1].sock.sendall(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ChannelError, match="no frame header"):
        _expect(b, Frame("tensor", limit=64))


def test_silence_and_a_closed_connection_are_named(pair):
    a, b = pair
    with pytest.raises(ChannelError, match=r"no data from party 0 .* for 1 s"):
        _expect(b, Frame("tensor", limit=64), timeout_s=1)
    a.close()
    with pytest.raises(ChannelError, match="party 0 .*(closed the connection|lost the connection)"):
        _expect(b, Frame("tensor", limit=64))
