"""The README's two-host and three-host examples, run as written: each host its own
network namespace on one LAN, its own working directory, the certificates copied between
them as the README says. Only ``HOST_A`` (host A's address) and ``META_DIR`` (a directory
holding the checkpoint's ``meta.json`` alone) are filled in."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from secvit.checkpoint import load_model
from secvit.inputs import load_images
from secvit.runtime.netem import host_network, unavailable_reason

ROOT = Path(__file__).resolve().parents[1]


def readme_example(name: str) -> list[tuple[str, str]]:
    """The ``(host, command)`` lines of the README's bash block marked ``example: name``."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- example: {name} -->\n```bash\n(.*?)```", text, re.S)
    assert match, f"README has no example {name!r}"
    lines, host = [], None
    for line in match.group(1).replace("\\\n", " ").splitlines():
        heading = re.match(r"# host (\w)\b", line)
        if heading:
            host = heading.group(1)
        elif line.strip() and not line.startswith("#"):
            lines.append((host, " ".join(line.split())))
    return lines


def _run_example(name: str, tmp_path: Path) -> dict:
    reason = unavailable_reason(shape=False)
    if reason:
        pytest.skip(reason)
    steps = readme_example(name)
    names = sorted({host for host, _ in steps})
    meta_dir = tmp_path / "meta"
    meta_dir.mkdir()
    shutil.copy(ROOT / "checkpoints" / "vit_lite_7_4_32-digits" / "meta.json", meta_dir)
    dirs = {h: tmp_path / f"host{h}" for h in names}
    for d in dirs.values():
        d.mkdir()
        (d / "checkpoints").symlink_to(ROOT / "checkpoints")
    with host_network(len(names), tag=f"rd{len(names)}") as hosts:
        where = dict(zip(names, hosts))

        def argv(command: str, host: str) -> list[str]:
            command = command.replace("HOST_A", where["A"].address).replace("META_DIR", str(meta_dir))
            words = shlex.split(command)
            assert words[0] == "secvit", command
            return [*where[host].prefix, sys.executable, "-m", "secvit", *words[1:]]

        for host, command in steps:
            if command.split()[1] == "keys":
                subprocess.run(argv(command, host), cwd=dirs[host], check=True, capture_output=True)
        for host in names:  # the README's copy step
            for other in names:
                if other != host:
                    for cert in (dirs[other] / "keys").glob("*.crt"):
                        shutil.copy(cert, dirs[host] / "keys")
        parties = [subprocess.Popen(argv(command, host), cwd=dirs[host], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
                   for host, command in steps if command.split()[1] == "party"]
        outputs = [p.communicate(timeout=300)[0] for p in parties]
    for p, out in zip(parties, outputs):
        assert p.returncode == 0, out
    return json.loads((dirs["B"] / "logits.json").read_text())


@pytest.mark.parametrize("name, processes", [("two-hosts", 2), ("three-hosts", 3)])
def test_readme_example_runs_as_written_on_separate_hosts(name, processes, tmp_path):
    steps = readme_example(name)
    assert len([c for _, c in steps if c.split()[1] == "party"]) == processes
    report = _run_example(name, tmp_path)
    model, meta = load_model(str(ROOT / "checkpoints" / "vit_lite_7_4_32-digits"))
    with torch.no_grad():
        plain = model(load_images(["digits-test:4"], meta)[0])
    logits = torch.tensor(report["logits"])
    assert logits.shape == plain.shape
    assert (logits - plain).abs().max() < 0.05
    assert torch.equal(logits.argmax(-1), plain.argmax(-1))
