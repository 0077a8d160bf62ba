"""Profiler: per-node records that partition the run, network estimates, reports."""

from __future__ import annotations

import csv
import json

import pytest

from secvit import cli
from secvit.network import NetworkError, NetworkProfile, load_network
from secvit.profile.run import run_profile

KINDS_OF_A_VIT = {"linear", "matmul", "softmax", "activation", "norm"}


def _assert_partition(report) -> None:
    """Per party, the nodes' own costs sum to that party's totals exactly."""
    for rank, party in report.parties.items():
        assert sum(n["parties"][rank]["bytes"] for n in report.nodes) == party["bytes"]
        assert sum(n["parties"][rank]["rounds"] for n in report.nodes) == party["rounds"]
        assert sum(n["parties"][rank]["seconds"] for n in report.nodes) <= party["seconds"] * 1.001
    assert sum(n["bytes"] for n in report.nodes) == report.totals["bytes_all_parties"]
    assert sum(g["bytes"] for g in report.by_kind().values()) == report.totals["bytes_all_parties"]
    assert sum(g["rounds"] for g in report.by_layer().values()) == sum(n["rounds"] for n in report.nodes)


def test_profile_of_the_plain_model_partitions_the_run(tiny_ckpt):
    report = run_profile(tiny_ckpt, n=2, network="wan")
    _assert_partition(report)
    assert KINDS_OF_A_VIT <= set(report.by_kind())
    softmax = [n for n in report.nodes if n["kind"] == "softmax"]
    assert softmax and all(n["protocol"] == "softmax.exact" and n["layer"] == 0 for n in softmax)
    assert {n["node"] for n in report.nodes} >= {"input.share", "output.reveal"}
    assert report.totals["estimated_seconds"] > report.totals["rounds"] * 0.04  # a one-way delay (40 ms) per round


def test_profile_splits_mpc_attention_into_its_steps(tiny_ckpt):
    report = run_profile(tiny_ckpt, policy="relu", n=2, network="lan")
    _assert_partition(report)
    steps = {n["node"].rsplit("/", 1)[-1]: n for n in report.nodes if n["node"].startswith("blocks_0_attn/")}
    assert {"qkv", "q@k", "softmax.relu", "attn@v", "proj"} <= set(steps)
    assert steps["q@k"]["kind"] == "matmul" and steps["qkv"]["kind"] == "linear"
    assert steps["softmax.relu"]["protocol"] == "softmax.relu" and steps["softmax.relu"]["layer"] == 0
    assert steps["softmax.relu"]["rounds"] > 8  # a comparison, then the reciprocal


def test_network_model_and_profiles(tmp_path):
    wan = load_network("wan")
    assert (wan.bandwidth_mbps, wan.rtt_ms) == (100, 80)
    # 10 rounds x 40 ms (one way) + (2 MB sent+received / 2) x 8 / 100 Mbit/s
    assert wan.estimate(0.5, 2_000_000, 10) == pytest.approx(0.5 + 0.4 + 0.08)
    custom = tmp_path / "sat.yaml"
    custom.write_text("name: sat\nbandwidth_mbps: 20\nrtt_ms: 600\n")
    assert load_network(str(custom)) == NetworkProfile("sat", 20, 600)
    with pytest.raises(NetworkError, match="known: lan, wan"):
        load_network("moon")
    custom.write_text("name: sat\nbandwidth: 20\nrtt_ms: 600\n")
    with pytest.raises(NetworkError, match="expected exactly the keys"):
        load_network(str(custom))


def test_profile_command_writes_json_csv_and_plot(tiny_ckpt, tmp_path, capsys):
    paths = {k: tmp_path / f"p.{k}" for k in ("json", "csv", "png")}
    assert cli.main(["profile", "--checkpoint", tiny_ckpt, "--n", "2", "--network", "wan", "--json", str(paths["json"]),
                     "--csv", str(paths["csv"]), "--plot", str(paths["png"])]) == 0
    out = capsys.readouterr().out
    assert "per op kind" in out and "truncation (exact)" in out
    report = json.loads(paths["json"].read_text())
    assert report["truncation_risk"]["expected_corrupted_images_per_million"] == 0.0
    for rank, party in report["parties"].items():
        assert sum(n["parties"][rank]["bytes"] for n in report["nodes"]) == party["bytes"]
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == len(report["nodes"]) and sum(int(r["rounds_party0"]) for r in rows) == report["parties"]["0"]["rounds"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_rejects_a_bad_policy_before_any_party(tiny_ckpt, capsys):
    assert cli.main(["compare", "--checkpoint", tiny_ckpt, "--policies", "exact,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_compare_writes_one_table_and_one_plot(tiny_ckpt, tmp_path):
    md, png = tmp_path / "c.md", tmp_path / "c.png"
    assert cli.main(["compare", "--checkpoint", tiny_ckpt, "--policies", "exact,linear", "--n", "2",
                     "--md", str(md), "--plot", str(png)]) == 0
    lines = md.read_text().splitlines()
    assert lines[2].startswith("| exact |") and lines[3].startswith("| linear |")
    assert png.stat().st_size > 10_000


def test_batch_runs_in_the_rounds_of_one_image(tiny_ckpt):
    one, three = run_profile(tiny_ckpt, n=1), run_profile(tiny_ckpt, n=3)
    assert one.totals["rounds"] == three.totals["rounds"]
    assert three.totals["bytes_per_party"] > 2.5 * one.totals["bytes_per_party"]


def test_a_policy_file_is_reported_by_its_name(tiny_ckpt, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nattention: {default: softmax.scaling}\n")
    assert run_profile(tiny_ckpt, policy=str(path), n=1).policy == "mine"


def test_pareto_front_keeps_the_undominated_points():
    from secvit.profile.tradeoff import pareto_front

    rows = [{"estimated_seconds_per_image": c, "test_accuracy": a} for c, a in
            [(10, 0.99), (5, 0.98), (6, 0.97), (5, 0.98), (1, 0.5), (12, 0.99)]]
    assert pareto_front(rows) == [True, True, False, True, True, False]
    # within 2% the costs tie: the same protocols measured twice are both optimal, a less
    # accurate model of that cost is not, however its measured seconds fell
    rows = [{"estimated_seconds_per_image": c, "test_accuracy": a} for c, a in
            [(120.8, 0.986), (121.0, 0.986), (120.7, 0.964), (110.0, 0.95)]]
    assert pareto_front(rows) == [True, True, False, True]


def test_pareto_command_profiles_checkpoints(tiny_ckpt, tmp_path):
    import json

    from secvit import cli

    out = tmp_path / "pareto"
    assert cli.main(["pareto", tiny_ckpt, tiny_ckpt, "--names", "a,b", "--network", "wan", "--json", f"{out}.json",
                     "--md", f"{out}.md", "--plot", f"{out}.png"]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["a", "b"] and all(r["rounds"] > 0 for r in rows)
    assert all(r["pareto"] for r in rows)  # same model: a tie, whatever the measured seconds
    assert out.with_suffix(".png").stat().st_size > 0 and "| a | exact |" in out.with_suffix(".md").read_text()
    assert cli.main(["pareto", tiny_ckpt, "--names", "a,b"]) == 2
