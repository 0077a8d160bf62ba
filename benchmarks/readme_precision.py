"""The README's fixed-point precision table ([6 of 7]), from
``benchmarks/results/precision/*.json`` (``secvit precision --json``, in ``make results``):
for each shipped checkpoint and number of fractional bits, the emulated accuracy on the
test sample, MPC's agreement with the float reference, and how many images per million
CrypTen's local truncation would corrupt; then the fewest bits within the tolerance."""

from __future__ import annotations

import json
from pathlib import Path

PRECISION = Path(__file__).resolve().parent / "results" / "precision"


def precision_table() -> str:
    """One row per checkpoint, one column per number of fractional bits."""
    reports = [json.loads(p.read_text()) for p in sorted(PRECISION.glob("*.json"))]
    if not reports:
        return ""
    bits = sorted({r["precision_bits"] for report in reports for r in report["rows"]})
    first = reports[0]["rows"][0]
    lines = ["Fixed-point precision under MPC (`secvit precision --bits ...`, `make results`; the exact Fashion-MNIST "
             "checkpoint from 12 to 18 bits, as it records 18, the others from 10 to 16): "
             "each cell is the emulated accuracy on the test sample · MPC's agreement with the float reference "
             f"(on the first images, {first['provider']}) · images per million CrypTen's local truncation would "
             f"corrupt (secvit's exact truncation: none); the last column is the fewest bits from which the emulation "
             f"stays within {reports[0]['tolerance'] * 100:g} points of the float model and MPC agrees with it.", "",
             "| checkpoint | images (MPC) | float | " + " | ".join(f"{b} bits" for b in bits) + " | fewest bits |",
             "|---|---:|---:|" + "---:|" * len(bits) + "---:|"]
    for report in reports:
        by_bits = {r["precision_bits"]: r for r in report["rows"]}
        any_row = report["rows"][0]
        cells = []
        for b in bits:
            r = by_bits.get(b)
            cells.append("–" if r is None else
                         f"{r['accuracy']['emulation']:.2%} · {r['agreement_mpc_vs_reference']:.0%} · "
                         f"{r['truncation']['local_corrupted_images_per_million']:,.0f}")
        fewest, own = report["fewest_bits"], sorted(by_bits)
        fewest_cell = ("more than " + str(own[-1]) if fewest is None
                       else f"{fewest} (fewer not measured)" if fewest == own[0] > bits[0] else str(fewest))
        lines.append(f"| {Path(report['checkpoint']).name} | {any_row['images']:,} ({any_row['mpc_images']}) | "
                     f"{any_row['accuracy']['reference']:.2%} | " + " | ".join(cells) + f" | {fewest_cell} |")
    return "\n".join(lines)
