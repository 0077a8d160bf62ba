"""Regenerate the README's tables from the project's own reports.

Results: ``benchmarks/results/demo.json`` (``secvit demo --json``),
``benchmarks/results/secure_forward.json`` (pytest-benchmark ``--benchmark-json``) and
``benchmarks/results/check_*.json`` (``secvit check --json``), into
the block between ``<!-- results:start -->`` and ``<!-- results:end -->``. Protocols:
``secvit protocols --format md``, between ``<!-- protocols:start/end -->``.

    python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def demo_table(path: Path) -> str:
    d = json.loads(path.read_text())
    agree = round(d["agreement"] * d["images"])
    return "\n".join([
        f"`secvit demo` ({d['model']}, {d['images']} digits test images in one batch, 2 parties, {d['provider']}, "
        "loopback, 2 cores; per party):",
        "",
        "| images | agreement | max abs logit error | s / image | MB / image | rounds / image |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {d['images']} | {agree}/{d['images']} | {d['max_abs_logit_error']:.2e} | {d['seconds_per_image']:.2f} | "
        f"{d['bytes_per_image'] / 1e6:.1f} | {d['rounds_per_image']:.0f} |",
    ])


def forward_table(path: Path) -> str:
    runs = json.loads(path.read_text())["benchmarks"]
    rows = [
        "Secure forward of `vit_lite_7_4_32`, batch 1, 2 parties, TFP, loopback, 2 cores "
        "(`make results`; per party):",
        "",
        "| implementation | seconds | MB | rounds | max abs logit error |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        info = run.get("extra_info", {})
        if {"seconds", "bytes", "rounds"} <= info.keys() and "policy" not in info:
            err = info.get("max_abs_logit_error")
            rows.append(f"| {info.get('label', run['name'])} | {info['seconds']:.2f} | {info['bytes'] / 1e6:.1f} | "
                        f"{info['rounds']} | {'-' if err is None else f'{err:.2e}'} |")
    return "\n".join(rows)


def policy_table(path: Path) -> str:
    runs = [r["extra_info"] for r in json.loads(path.read_text())["benchmarks"] if "policy" in r.get("extra_info", {})]
    rows = ["Secure forward of `vit_lite_7_4_32` rewritten by each policy, batch 1 (per party; cost only):", "",
            "| policy | seconds | MB | rounds |", "|---|---:|---:|---:|"]
    rows += [f"| {i['policy']} | {i['seconds']:.2f} | {i['bytes'] / 1e6:.1f} | {i['rounds']} |" for i in runs]
    return "\n".join(rows) if runs else ""


def check_table(paths: list[Path]) -> str:
    if not paths:
        return ""
    rows = ["`secvit check` on the shipped checkpoints (accuracy on the digits test split; MPC on the first "
            "images of it; 2 parties, TFP):", "",
            "| checkpoint | policy | original | rewritten (reference) | emulation | MPC | MPC vs reference | "
            "MPC vs emulation: max abs logit error |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        r = json.loads(path.read_text())
        a = r["accuracy"]
        rows.append(f"| {Path(r['checkpoint']).name} | {r['policy']} | {a['original']:.4f} | {a['reference']:.4f} "
                    f"({r['images']}) | {a['emulation']:.4f} | {a['mpc']:.4f} ({r['mpc_images']}) | "
                    f"{r['agreement_mpc_vs_reference']:.0%} agree | {r['max_abs_logit_error_mpc_vs_emulation']:.1e} |")
    return "\n".join(rows)


def render() -> str:
    parts = []
    if (RESULTS / "demo.json").exists():
        parts.append(demo_table(RESULTS / "demo.json"))
    if (RESULTS / "secure_forward.json").exists():
        parts.append(forward_table(RESULTS / "secure_forward.json"))
        parts.append(policy_table(RESULTS / "secure_forward.json"))
    parts.append(check_table(sorted(RESULTS.glob("check_*.json"))))
    return "\n\n".join(p for p in parts if p) or "_No results yet: run `make results`._"


def render_protocols() -> str:
    from secvit.protocol_table import protocol_rows, to_markdown

    return to_markdown(protocol_rows())


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, body in (("results", render()), ("protocols", render_protocols())):
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    main()
