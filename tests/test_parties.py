"""Parties as separate OS processes: sessions, custody of secrets, faults."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from secvit import cli
from secvit.checkpoint import load_model
from secvit.inputs import load_images
from secvit.runtime.audit import fingerprint
from secvit.runtime.launcher import PartyFailure, run_local
from secvit.runtime.party import RendezvousError
from secvit.session import run_session


@pytest.mark.parametrize("provider", ["dealer", "TFP"])
def test_session_agrees_with_plaintext(tiny_ckpt, provider):
    report = run_session(tiny_ckpt, ["digits-test:5"], provider=provider, batch_size=2)  # batches of 2, 2, 1
    summary = report.summary()
    assert summary["agreement"] == 1.0 and summary["images"] == 5
    assert summary["max_abs_logit_error"] < 0.05
    assert summary["rounds_per_forward"] > 0 and summary["bytes_per_image"] > 0
    assert set(summary["parties"]) == {"0", "1"}
    if provider == "dealer":  # prepared offline: the owner received the corrections (one exchange with the
        # dealer for the weights' masks, one per batch), the client only its LayerNorms' comparison keys (one
        # message per batch: the correction words common to both keys)
        offline = summary["offline"]
        assert summary["insecure"] == [] and offline["0"]["messages"] == 2 * (1 + 3) and offline["1"]["messages"] == 3
        assert offline["0"]["bytes"] > offline["1"]["bytes"] > 0
        assert summary["weight_masks"]["0"]["rounds"] == summary["weight_masks"]["1"]["rounds"] == 1
    else:
        assert any("party 0 deals" in reason for reason in summary["insecure"])


def test_demo_defaults_to_a_dealer_and_exact_truncation(tiny_ckpt, tmp_path):
    out = tmp_path / "demo.json"
    assert cli.main(["demo", "--checkpoint", tiny_ckpt, "--n", "2", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert (summary["provider"], summary["truncation"], summary["insecure"]) == ("dealer", "exact", [])
    assert summary["truncated_elements_per_image"] > 0
    risk = summary["truncation_risk"]  # the emulation predicts every truncation MPC ran, and none fails
    assert risk["elements_per_image_emulation"] == summary["truncated_elements_per_image"]
    assert risk["mode"] == "exact" and risk["expected_corrupted_images_per_million"] == 0.0


def test_insecure_flags_are_reported(tiny_ckpt, tmp_path):
    out = tmp_path / "demo.json"
    assert cli.main(["demo", "--checkpoint", tiny_ckpt, "--n", "2", "--insecure-tfp", "--insecure-local-truncation",
                     "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert (summary["provider"], summary["truncation"]) == ("TFP", "local") and len(summary["insecure"]) == 2
    risk = summary["truncation_risk"]
    assert risk["expected_corrupted_images_per_million"] == risk["local_corrupted_images_per_million"] > 0


def test_parties_that_disagree_stop_before_sharing_anything(tiny_ckpt):
    """Session agreement: a client that runs another policy is named, and nothing runs."""
    with pytest.raises(PartyFailure, match="mismatch in the session's policy"):
        run_local(["--checkpoint", tiny_ckpt, "--batch-size", "2"], timeout_s=120,
                  extra_args={1: ["--input", "digits-test:2", "--policy", "mpcformer"]})


def test_demo_cli_json(tiny_ckpt, tmp_path):
    out = tmp_path / "demo.json"
    assert cli.main(["demo", "--checkpoint", tiny_ckpt, "--n", "3", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    for key in ("images", "agreement", "max_abs_logit_error", "seconds_per_image", "bytes_per_image", "rounds_per_forward"):
        assert key in summary
    assert summary["images"] == 3 and summary["agreement"] == 1.0


def test_custody_of_weights_images_and_logits(tiny_ckpt, tmp_path):
    """Evidence from inside each process: hashes of every live plaintext float tensor."""
    reports = run_local(["--checkpoint", tiny_ckpt, "--audit", "--batch-size", "8"],
                        extra_args={1: ["--input", "digits-test:5"]})
    owner, client = (set(reports[r]["audit"]["fingerprints"]) for r in (0, 1))
    model, meta = load_model(tiny_ckpt)
    weights = {fingerprint(p) for p in model.state_dict().values() if p.numel() >= 16}
    images = {fingerprint(load_images(["digits-test:5"], meta)[0])}
    logits = {fingerprint(torch.tensor(reports[1]["logits"]))}
    # positive controls: the check sees what each party legitimately holds
    assert weights <= owner and images <= client and logits <= client
    # the client never holds the weights (its model lives on the meta device) ...
    assert not weights & client and reports[1]["audit"]["meta_params"]
    # ... the owner never holds the images, and only the client receives the logits
    assert not images & owner and not logits & owner
    assert "logits" not in reports[0]


@pytest.mark.parametrize("victim, survivor, named", [(1, 0, "party 1 (client)"), (0, 1, "party 0 (owner)")])
def test_killed_party_stops_the_others(tiny_ckpt, tmp_path, victim, survivor, named):
    procs = {}

    def kill_when_running(started):
        procs.update(started)

        def killer():
            log = tmp_path / f"party{victim}.log"
            deadline = time.monotonic() + 60
            while "encrypted" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            started[victim].kill()

        threading.Thread(target=killer, daemon=True).start()

    start = time.monotonic()
    with pytest.raises(PartyFailure, match=f"party {victim}"):
        run_local(["--checkpoint", tiny_ckpt, "--batch-size", "1", "--verbose"], extra_args={1: ["--input", "digits-test:300"]},
                  on_start=kill_when_running, workdir=tmp_path)
    assert procs[survivor].returncode not in (0, None)
    assert time.monotonic() - start < 90
    assert f"lost {named}" in (tmp_path / f"party{survivor}.log").read_text()


def _keys(directory, ranks) -> str:
    from protocols.mpc_runtime.keys import make_keys

    for rank in ranks:
        make_keys(directory, rank)
    return str(directory)


def test_port_in_use(tiny_ckpt, capsys, tmp_path):
    keys = _keys(tmp_path, (0, 1, 2))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RendezvousError, match=f"port {port} on 127.0.0.1 is already in use"):
            run_session(tiny_ckpt, ["digits-test:1"], port=port)
        code = cli.main(["party", "--rank", "0", "--rendezvous", f"tcp://127.0.0.1:{port}", "--checkpoint", tiny_ckpt,
                         "--keys", keys])
        assert code == 2 and "already in use" in capsys.readouterr().err


def test_role_must_match_rank(capsys):
    argv = ["party", "--rank", "0", "--role", "client", "--rendezvous", "tcp://127.0.0.1:1"]
    assert cli.main(argv) == 2
    assert "rank 0 is the owner" in capsys.readouterr().err


def test_three_terminals(tiny_ckpt, tmp_path):
    """The documented use: three independent `secvit party` commands (owner, client, dealer)."""
    from secvit.runtime.launcher import free_port

    url = f"tcp://127.0.0.1:{free_port()}"
    base = [sys.executable, "-m", "secvit", "party", "--rendezvous", url, "--keys", _keys(tmp_path / "keys", (0, 1, 2))]
    owner = subprocess.Popen([*base, "--rank", "0", "--role", "owner", "--checkpoint", tiny_ckpt])
    dealer = subprocess.Popen([*base, "--rank", "2", "--role", "dealer"])
    client = subprocess.run([*base, "--rank", "1", "--role", "client", "--checkpoint", tiny_ckpt, "--input",
                             "digits-test:2", "--result", str(tmp_path / "c.json")], timeout=120)
    assert client.returncode == 0 and owner.wait(timeout=60) == 0 and dealer.wait(timeout=60) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["logits"]) == 2


def test_two_terminals_without_a_dealer_need_the_insecure_flag(tiny_ckpt, tmp_path):
    from secvit.runtime.launcher import free_port

    url = f"tcp://127.0.0.1:{free_port()}"
    base = [sys.executable, "-m", "secvit", "party", "--rendezvous", url, "--checkpoint", tiny_ckpt, "--insecure-tfp",
            "--keys", _keys(tmp_path / "keys", (0, 1))]
    owner = subprocess.Popen([*base, "--rank", "0", "--role", "owner"])
    client = subprocess.run([*base, "--rank", "1", "--role", "client", "--input", "digits-test:2",
                             "--result", str(tmp_path / "c.json")], timeout=120)
    assert client.returncode == 0 and owner.wait(timeout=60) == 0
    assert json.loads((tmp_path / "c.json").read_text())["insecure"]
