"""Regenerate the README's tables from the project's own reports.

Results: ``benchmarks/results/demo.json`` (``secvit demo --json``),
``benchmarks/results/secure_forward.json`` (pytest-benchmark ``--benchmark-json``) and
``benchmarks/results/check_*.json``, ``mpc2000_*.json`` and ``fashion_*.json`` (``secvit check --json``),
``benchmarks/results/dealer.json`` (``benchmarks/test_dealer.py``),
``benchmarks/results/targets_dealer.json`` and ``scale.json`` ([4 of 7]'s targets and scale),
``benchmarks/results/compare_*.json`` (``secvit compare --json``),
``benchmarks/results/profile_*.json`` and ``netem_*.json`` (``secvit profile [--netem] --json``) and
``benchmarks/results/protocols.json`` and ``model_policies.json`` (their benchmark suites) and
``benchmarks/results/precision/*.json`` (``secvit precision --json``, :mod:`readme_precision`), into
the block between ``<!-- results:start -->`` and ``<!-- results:end -->``. Protocols:
``secvit protocols --format md``, between ``<!-- protocols:start/end -->``. Compression:
``benchmarks/results/compression/*.json`` (``make compression``: ``secvit pareto --json``),
between ``<!-- compression:start/end -->`` (:mod:`readme_compression`). Tasks ([7 of 7]): ``benchmarks/results/tasks/*.json``
(``benchmarks/tasks.sh``), between ``<!-- tasks:start/end -->`` (:mod:`readme_tasks`).

    python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from readme_compression import ROOT, pareto_table, render_compression
from readme_precision import precision_table
from readme_tasks import render_tasks

RESULTS = ROOT / "benchmarks" / "results"


def _infos(path: Path, key: str) -> list[dict]:
    """The ``extra_info`` of each run in a pytest-benchmark JSON that records ``key``."""
    return [r["extra_info"] for r in json.loads(path.read_text())["benchmarks"] if key in r.get("extra_info", {})]


def demo_table(path: Path) -> str:
    d = json.loads(path.read_text())
    agree = round(d["agreement"] * d["images"])
    who = "2 parties and a dealer" if d["provider"] == "dealer" else f"2 parties, {d['provider']}"
    offline = d.get("offline", {}).get("0", {}).get("seconds", 0.0)
    return "\n".join([
        f"`secvit demo` ({d['model']}, {d['images']} digits test images in one batch, {who}, "
        f"{d.get('truncation', 'local')} truncation, loopback, 2 cores; per party, online unless marked):",
        "",
        "| images | agreement | max abs logit error | s / image | MB / image | rounds per forward pass | offline s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {d['images']} | {agree}/{d['images']} | {d['max_abs_logit_error']:.2e} | {d['seconds_per_image']:.2f} | "
        f"{d['bytes_per_image'] / 1e6:.1f} | {d['rounds_per_forward']:.0f} | "
        f"{offline:.1f} |",
    ])


def forward_table(path: Path) -> str:
    runs = json.loads(path.read_text())["benchmarks"]
    rows = [
        "Secure forward of `vit_lite_7_4_32`, batch 1, 2 forked parties on secvit's TLS channels, TFP (party 0 "
        "deals; exact truncation), loopback, 2 cores (`make results`; per party):",
        "",
        "| implementation | seconds | MB | rounds | max abs logit error |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        info = run.get("extra_info", {})
        if {"seconds", "bytes", "rounds"} <= info.keys() and not {"policy", "batch"} & info.keys():
            err = info.get("max_abs_logit_error")
            rows.append(f"| {info.get('label', run['name'])} | {info['seconds']:.2f} | {info['bytes'] / 1e6:.1f} | "
                        f"{info['rounds']} | {'-' if err is None else f'{err:.2e}'} |")
    return "\n".join(rows)


def policy_table(path: Path) -> str:
    runs = _infos(path, "policy")
    rows = ["Secure forward of `vit_lite_7_4_32` rewritten by each policy, batch 1 (per party; cost only):", "",
            "| policy | seconds | MB | rounds |", "|---|---:|---:|---:|"]
    rows += [f"| {i['policy']} | {i['seconds']:.2f} | {i['bytes'] / 1e6:.1f} | {i['rounds']} |" for i in runs]
    return "\n".join(rows) if runs else ""


def throughput_table(path: Path) -> str:
    runs = _infos(path, "batch")
    rows = ["Batches: B images in one encrypted forward pass of `vit_lite_7_4_32` (exact; per party):", "",
            "| B | seconds | images / s | rounds | MB / image |", "|---:|---:|---:|---:|---:|"]
    rows += [f"| {i['batch']} | {i['seconds']:.2f} | {i['images_per_second']:.2f} | {i['rounds']} | "
             f"{i['bytes'] / i['batch'] / 1e6:.1f} |" for i in runs]
    return "\n".join(rows) if runs else ""


def channels_line(path: Path) -> str:
    runs = _infos(path, "tls_seconds")
    return "".join(f"The same engine forward on secvit's TLS channels against CrypTen's gloo communicator (with the same "
                   f"one-message openings), loopback, alternating in one run, best of 3 each: {i['tls_seconds']:.2f} s "
                   f"against {i['gloo_seconds']:.2f} s ({i['ratio']:.2f}x; {i['rounds']} rounds and "
                   f"{i['bytes'] / 1e6:.1f} MB per party on both)." for i in runs)


def overhead_line(path: Path) -> str:
    runs = _infos(path, "overhead")
    return "".join(f"Profiler overhead on that forward: {i['overhead']:+.1%} ({i['plain_seconds']:.2f} s without, "
                   f"{i['profiled_seconds']:.2f} s with; best of 3 each, alternating"
                   f"{'; below the run-to-run noise' if i['overhead'] < 0.01 else ''})." for i in runs)


def profile_table(path: Path) -> str:
    d = json.loads(path.read_text())
    net, t = d["network"], d["totals"]
    rows = [f"`secvit profile` of `{d['model']}` ({d['policy']}, {d['images']} images in one batch), per op kind, "
            f"estimated on `{net['name']}` ({net['bandwidth_mbps']:g} Mbit/s, {net['rtt_ms']:g} ms RTT); "
            f"total {t['estimated_seconds']:.1f} s estimated, {t['seconds']:.2f} s on loopback:", "",
            "| op kind | nodes | MB (both parties) | rounds | est. seconds | share |", "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {k} | {g['nodes']} | {g['bytes'] / 1e6:.1f} | {g['rounds']} | {g['estimated_seconds']:.1f} | "
             f"{g['estimated_seconds'] / t['estimated_seconds']:.0%} |" for k, g in d["by_kind"].items()]
    rows += ["", f"![profile]({path.with_suffix('.png').relative_to(ROOT)})"]
    return "\n".join(rows)


def model_policy_table(path: Path) -> str:
    runs = [r["extra_info"] for r in json.loads(path.read_text())["benchmarks"]]
    policies = list(dict.fromkeys(i["policy"] for i in runs))
    models = list(dict.fromkeys((i["model"], i["input"]) for i in runs))
    cell = {(i["model"], i["policy"]): i for i in runs}
    rows = ["Other architectures by policy (`benchmarks/test_model_policies.py`; random weights, one image; "
            "per party: seconds / MB / rounds):", "",
            "| model (input) | " + " | ".join(policies) + " |", "|---|" + "---:|" * len(policies)]
    for model, size in models:
        cells = " | ".join(f"{c['seconds']:.2f} / {c['bytes'] / 1e6:.1f} / {c['rounds']}"
                           for c in (cell[(model, p)] for p in policies))
        rows.append(f"| {model} ({size}×{size}) | {cells} |")
    return "\n".join(rows)


def protocol_cost_table(path: Path) -> str:
    runs = [r["extra_info"] for r in json.loads(path.read_text())["benchmarks"]]
    if not runs:
        return ""
    sizes = [row["elements"] for row in runs[0]["sizes"]]
    head = " | ".join(f"{n} el.: rounds, B/el., µs/el." for n in sizes)
    rows = ["Every protocol at a few sizes (`benchmarks/test_protocols.py`; rows of 64 for softmax and norm; "
            "2 parties, party 0 deals, exact truncation, per party):", "", f"| protocol | {head} |", "|---|" + "---:|" * len(sizes)]
    for info in runs:
        cells = " | ".join(f"{r['rounds']}, {r['bytes_per_element']:.0f}, {r['microseconds_per_element']:.2f}"
                           for r in info["sizes"])
        rows.append(f"| `{info['protocol']}` | {cells} |")
    return "\n".join(rows)


def compare_table(path: Path) -> str:
    d = json.loads(path.read_text())
    net = d["network"]
    rows = [f"`secvit compare` on `{Path(d['checkpoint']).name}` ({d['images']} images in one batch; estimates on "
            f"`{net['name']}`: {net['bandwidth_mbps']:g} Mbit/s, {net['rtt_ms']:g} ms RTT; per party). "
            f"Chart: `{path.with_suffix('.png').relative_to(ROOT)}`.", "",
            f"| policy | s / image (loopback) | MB / image | rounds (batch) | est. s / image ({net['name']}) | "
            "est. share: softmax / activation / norm / linear+matmul |",
            "|---|---:|---:|---:|---:|---|"]
    for r in d["policies"]:
        k, total = r["by_kind"], r["estimated_seconds_per_image"]
        share = " / ".join(f"{(k.get(a, 0) + (k.get('matmul', 0) if a == 'linear' else 0)) / total:.0%}"
                           for a in ("softmax", "activation", "norm", "linear"))
        rows.append(f"| {r['policy']} | {r['seconds_per_image']:.2f} | {r['bytes_per_image'] / 1e6:.1f} | "
                    f"{r['rounds']} | {total:.2f} | {share} |")
    rows += ["", f"![comparison]({path.with_suffix('.png').relative_to(ROOT)})"]
    return "\n".join(rows)


def netem_table(paths: list[Path]) -> str:
    reports = [json.loads(p.read_text()) for p in paths]
    reports = [r for r in reports if r.get("netem")]
    if not reports:
        return ""
    rows = ["Estimate vs measurement: `secvit profile --netem` runs the parties again in network namespaces "
            "joined by the shaped link (shipped checkpoints, batch 1, per party; a round costs one one-way delay "
            "on secvit's channels):", "",
            "| model | policy | setting | network | rounds | MB | estimated s | measured s | estimate / measured | link |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in sorted(reports, key=lambda r: (bool(r["totals"]["insecure"]), r["policy"])):
        t, m, net = r["totals"], r["netem"], r["network"]
        setting = "TFP, local truncation (insecure)" if t["insecure"] else "dealer, exact truncation"
        rows.append(f"| {r['model']} | {r['policy']} | {setting} | {net['name']} ({net['bandwidth_mbps']:g} Mbit/s, "
                    f"{net['rtt_ms']:g} ms) | {t['rounds']} | {t['bytes_per_party'] / 1e6:.1f} | "
                    f"{t['estimated_seconds']:.1f} | {m['seconds']:.1f} | {t['estimated_seconds'] / m['seconds']:.2f} | "
                    f"{m['shaper']} |")
    return "\n".join(rows)


def _check_row(r: dict) -> str:
    a = r["accuracy"]
    return (f"| {Path(r['checkpoint']).name} | {r['policy']} | {a['original']:.4f} | {a['reference']:.4f} "
            f"({r['images']}) | {a['emulation']:.4f} | {a['mpc']:.4f} ({r['mpc_images']}) | "
            f"{r['agreement_mpc_vs_reference']:.0%} agree | {r['max_abs_logit_error_mpc_vs_emulation']:.1e} |")


def _sample_row(r: dict) -> str:
    t = r["truncation"]
    return (f"| {Path(r['checkpoint']).name} | {r['mpc_images']:,} | {r['agreement_mpc_vs_reference']:.2%} | "
            f"{r['max_abs_logit_error_mpc_vs_reference']:.1e} | {t['elements_per_image_mpc'] / 1e6:.2f} M | "
            f"2^{t['largest_magnitude_log2']:.1f} (exact holds below 2^{t['exact_range_log2']:.0f}) | "
            f"{t['local_corrupted_images_per_million']:,.0f} |")


def _real_data_row(r: dict) -> str:
    a = r["accuracy"]
    return (f"| {Path(r['checkpoint']).name} | {r['policy']} | {r['precision_bits']} | {a['reference']:.2%} | "
            f"{a['emulation']:.2%} | "
            f"{a['mpc']:.2%} | {r['agreement_mpc_vs_reference']:.2%} | {r['max_abs_logit_error_mpc_vs_reference']:.1e} | "
            f"{r['bytes_per_image_mpc'] / 1e6:.1f} | {r['rounds_per_forward_mpc']:.0f} | {r['seconds_per_image_mpc']:.2f} |")


@dataclass(frozen=True)
class ReportTable:
    """One markdown row per JSON report matching ``pattern`` (``row``), under
    ``intro(first report)`` and ``header``; the first ``left`` columns left-aligned."""

    pattern: str
    intro: Callable[[dict], str]
    header: str
    row: Callable[[dict], str]
    left: int = 1

    def render(self) -> str:
        reports = [json.loads(path.read_text()) for path in sorted(RESULTS.glob(self.pattern))]
        if not reports:
            return ""
        columns = self.header.count(" | ") + 1
        align = "|" + "---|" * self.left + "---:|" * (columns - self.left)
        return "\n".join([self.intro(reports[0]), "", self.header, align, *map(self.row, reports)])


REPORT_TABLES = (
    # `secvit check` on the test split
    ReportTable("check_*.json",
                lambda first: ("`secvit check` on the shipped checkpoints (accuracy on the digits test split; MPC on "
                               f"the first images of it; 2 parties, {first.get('provider', 'TFP')}):"),
                "| checkpoint | policy | original | rewritten (reference) | emulation | MPC | MPC vs reference | "
                "MPC vs emulation: max abs logit error |", _check_row, left=2),
    # `secvit check --split augmented`: many images under MPC, truncation risk
    ReportTable("mpc2000_*.json",
                lambda first: ("Truncation under MPC at scale (`secvit check --split augmented --n 2000 --mpc-n "
                               "2000`: the 1,797 digits then translated copies; 2 parties and a dealer, exact "
                               f"truncation, batches of {first['batch_size']}; `make results`):"),
                "| checkpoint | images under MPC | agreement with the reference | max abs logit error | "
                "truncated elements / image | largest truncated |x| | local truncation: corrupted images per "
                "million |", _sample_row),
    # `secvit check` of the Fashion-MNIST checkpoints: the whole test split, MPC on the first 1,000
    ReportTable("fashion_*.json",
                lambda first: (f"Fashion-MNIST (`secvit check --n {first['images']} --mpc-n {first['mpc_images']} "
                               f"--batch-size {first['batch_size']}`: accuracy on the {first['images']:,} test images "
                               f"in plaintext and emulation, on the first {first['mpc_images']:,} under MPC; 2 parties "
                               f"and a {first['provider']}; bits: the fixed-point fractional bits, the checkpoint's "
                               "recorded `precision_bits`; MB and seconds per image and party, rounds per batch; "
                               "`make results`):"),
                "| checkpoint | policy | bits | plaintext | emulation | MPC | MPC vs reference | max abs logit error | "
                "MB / image | rounds | s / image |", _real_data_row, left=2),
)


def dealer_table(path: Path) -> str:
    """``benchmarks/test_dealer.py``: online/offline with the dealer against party 0 dealing."""
    runs = _infos(path, "batch")
    if not runs:
        return ""
    rows = ["The dealer's offline/online split against party 0 dealing (`benchmarks/test_dealer.py`: real party "
            "processes, loopback, 2 cores, one thread each; per forward pass, largest party; offline: the owner's "
            "dry run, request table and corrections):", "",
            "| checkpoint | batch | mode | online s | rounds | MB / image | offline s | offline MB | keystream MB | "
            "online / TFP-local |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i in runs:
        for mode in ("dealer", "tfp-exact", "tfp-local"):
            m = i[mode]
            ratio = f"{m['seconds'] / i['tfp-local']['seconds']:.2f}×"
            rows.append(f"| {i['model']} | {i['batch']} | {mode} | {m['seconds']:.2f} | {m['rounds']:.0f} | "
                        f"{m['MB']:.1f} | {m['offline_seconds']:.2f} | {m['offline_MB']:.1f} | {m['random_MB']:.0f} | "
                        f"{ratio} |")
    streams = _infos(path, "aes_GB_per_s")
    for i in streams:
        rows += ["", f"Randomness: AES-128-CTR keystream {i['aes_GB_per_s']:.2f} GB/s against CrypTen's "
                     f"`torch.randint` on MT19937 {i['mt19937_GB_per_s']:.2f} GB/s (8 M ring elements, one core); "
                     "a forward pass's keystream (the column above, largest party) costs its MB over that rate."]
    return "\n".join(rows)


def targets_table(path: Path) -> str:
    """``benchmarks/test_secure_forward.py -k targets``: [4 of 7]'s targets, dealer online."""
    runs = [info["runs"] for info in _infos(path, "runs")]
    if not runs:
        return ""
    rows = ["[4 of 7]'s targets: the shipped checkpoints' online phase with the dealer against the hand-written "
            "CrypTen exact forward of `vit_lite_7_4_32`, in one run (batch 1, loopback, 2 cores; per party; `lean` is "
            "the 3-block student, the others have 7 blocks; the targets apply to the exact checkpoint and the best "
            "MPC-friendly one):", "",
            "| forward | seconds | speed-up | MB | rounds | targets (speed-up, MB, rounds) | met |",
            "|---|---:|---:|---:|---:|---|---|"]
    for label, r in runs[0].items():
        t = r.get("targets")
        met = (", ".join(k for k, ok in r["met"].items() if ok) or "none") if t else "-"
        target = f"{t['speedup']:.0f}x, {t['bytes'] / 1e6:.0f}, {t['rounds']}" if t else "-"
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else "1x"
        rows.append(f"| {label} | {r['seconds']:.2f} | {speedup} | {r['bytes'] / 1e6:.1f} | {r['rounds']:,} | "
                    f"{target} | {met} |")
    return "\n".join(rows)


def scale_table(path: Path) -> str:
    """``benchmarks/test_scale.py``: timm's ViTs at 224 x 224."""
    runs = _infos(path, "model")
    if not runs:
        return ""
    rows = ["Scale: timm's ViTs at 224 x 224 through the secure plan (random weights, batch 1, 2 parties, TFP, "
            "loopback, 2 cores; per party; seconds: the median of 3 forwards; `benchmarks/test_scale.py`; target "
            "for exact `vit_base_patch16_224`: 30 s, 4 GB):", "",
            "| model | policy | seconds | GB | rounds | weights masked at load (GB) | peak memory (GiB) | "
            "max abs logit error |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| `{i['model']}` | {i['policy']} | {i['seconds']:.2f} | {i['bytes'] / 1e9:.2f} | {i['rounds']:,} | "
             f"{i['weight_masks']['bytes'] / 1e9:.2f} | {max(i['peak_rss_gib']):.2f} | {i['max_abs_logit_error']:.2e} |"
             for i in runs]
    return "\n".join(rows)


def render() -> str:
    parts = []
    if (RESULTS / "demo.json").exists():
        parts.append(demo_table(RESULTS / "demo.json"))
    if (RESULTS / "secure_forward.json").exists():
        parts.append(forward_table(RESULTS / "secure_forward.json"))
        parts.append(channels_line(RESULTS / "secure_forward.json"))
        parts.append(policy_table(RESULTS / "secure_forward.json"))
    parts += [table.render() for table in REPORT_TABLES]
    if (RESULTS / "dealer.json").exists():
        parts.append(dealer_table(RESULTS / "dealer.json"))
    if (RESULTS / "targets_dealer.json").exists():
        parts.append(targets_table(RESULTS / "targets_dealer.json"))
    if (RESULTS / "pareto_shipped_wan.json").exists():
        parts.append(pareto_table(RESULTS / "pareto_shipped_wan.json", "The shipped checkpoints' accuracy"))
    if (RESULTS / "scale.json").exists():
        parts.append(scale_table(RESULTS / "scale.json"))
    if (RESULTS / "secure_forward.json").exists():
        parts.append(throughput_table(RESULTS / "secure_forward.json"))
        parts.append(overhead_line(RESULTS / "secure_forward.json"))
    parts += [profile_table(p) for p in sorted(RESULTS.glob("profile_*.json"))]
    parts += [compare_table(p) for p in sorted(RESULTS.glob("compare_*.json"))]
    parts.append(netem_table(sorted(RESULTS.glob("netem_*.json"))))
    parts.append(precision_table())
    if (RESULTS / "model_policies.json").exists():
        parts.append(model_policy_table(RESULTS / "model_policies.json"))
    if (RESULTS / "protocols.json").exists():
        parts.append(protocol_cost_table(RESULTS / "protocols.json"))
    return "\n\n".join(p for p in parts if p) or "_No results yet: run `make results`._"


def render_protocols() -> str:
    from secvit.protocol_table import protocol_rows, to_markdown

    return to_markdown(protocol_rows())


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, body in (("results", render()), ("protocols", render_protocols()), ("compression", render_compression()),
                       ("tasks", render_tasks())):
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    main()
