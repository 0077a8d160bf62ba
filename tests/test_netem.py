"""Parties in separate network namespaces (root and iproute2; netem needs sch_netem)."""

from __future__ import annotations

import pytest

from secvit.network import load_network
from secvit.runtime.netem import netem_link, unavailable_reason
from secvit.session import run_session


def _require(shape: bool) -> None:
    reason = unavailable_reason(shape=shape)
    if reason:
        pytest.skip(reason)


def test_parties_meet_across_namespaces(tiny_ckpt):
    """The wiring of --netem without shaping: two namespaces, one veth pair."""
    _require(shape=False)
    with netem_link(None, tag="t0") as link:
        report = run_session(tiny_ckpt, ["digits-test:2"], link=link)
    assert report.agreement == 1.0


def test_netem_wan_is_measured_next_to_the_estimate(tiny_ckpt):
    _require(shape=True)
    from secvit.profile.run import measure_under_netem, run_profile

    wan = load_network("wan")
    report = run_profile(tiny_ckpt, n=2, network=wan)
    measured = measure_under_netem(tiny_ckpt, None, 2, wan)
    assert measured["rounds"] == report.totals["rounds"]
    assert 0.9 < report.totals["estimated_seconds"] / measured["seconds"] < 1.1  # one one-way delay per round


def test_netem_refused_with_the_reason_when_unavailable(tiny_ckpt, capsys):
    reason = unavailable_reason()
    if reason is None:
        pytest.skip("netem is available here")
    from secvit import cli

    assert cli.main(["profile", "--checkpoint", tiny_ckpt, "--n", "1", "--netem"]) == 2
    assert "--netem" in capsys.readouterr().err
