"""The README's compression tables, from ``benchmarks/results/compression/*.json``
(``make compression``: ``secvit pareto --json``, ``secvit supernet front --json``) and
``benchmarks/results/quantize/*.json`` (``benchmarks/quantize.sh``): distillation, accuracy
against secure cost, GQA, PWCA, TinyCLIP, the supernet's front and subnets, and PTQ.
Rendered between ``<!-- compression:start -->`` and ``<!-- compression:end -->`` by
``benchmarks/readme_tables.py``."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


DISTILL_NAMES = {"none": "cross-entropy only", "kd": "+ KD (T = 4)", "nkd": "+ NKD (γ 1.5, λ 1)",
                 "mpcformer": "MPCFormer two stages (features, then soft labels)", "uskd": "+ USKD (no teacher)",
                 "sparse": "sparse teacher logits (top 5, cached)"}


def distill_table(path: Path, teacher: float) -> str:
    rows = json.loads(path.read_text())["rows"]
    lines = [f"Distillation of MPCFormer's policy (2Quad attention, Quad GELU) from the shipped exact teacher "
             f"({teacher:.2%}), 15 epochs each, same seed (`make compression`; test accuracy on the saved weights, "
             "360 images):", "", "| training | test accuracy | vs teacher |", "|---|---:|---:|"]
    lines += [f"| {DISTILL_NAMES.get(r['name'], r['name'])} | {r['test_accuracy']:.2%} | "
              f"{100 * (r['test_accuracy'] - teacher):+.2f} pt |" for r in rows]
    return "\n".join(lines)


def pareto_table(path: Path, subject: str = "Accuracy") -> str:
    """``secvit pareto --json``: ``subject`` against secure cost, with its chart where there is one."""
    d = json.loads(path.read_text())
    net = d["network"]
    lines = [f"{subject} against secure cost (`secvit pareto`, batch 1, 2 parties, TFP, per party; estimate on "
             f"`{net['name']}`, {net['bandwidth_mbps']:g} Mbit/s, {net['rtt_ms']:g} ms RTT):", "",
             "| model | policy | blocks | test acc. | rounds | MB/image | s/image (measured) | s/image (est.) | Pareto |",
             "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
    lines += [f"| {r['name']} | {r['policy']} | {r['depth']} | {r['test_accuracy']:.2%} | {r['rounds']} | "
              f"{r['mb_per_image']:.1f} | {r['seconds_per_image']:.2f} | {r['estimated_seconds_per_image']:.1f} | "
              f"{'yes' if r['pareto'] else ''} |" for r in d["rows"]]
    png = path.with_suffix(".png")
    if png.exists():
        lines += ["", f"![accuracy against cost]({png.relative_to(ROOT).as_posix()})"]
    return "\n".join(lines)


PTQ_NAMES = {"minmax": "min-max, per tensor (baseline)", "repq": "RepQ-ViT", "isvit": "I&S-ViT"}


def quantize_table(paths: list[Path]) -> str:
    """``benchmarks/quantize.sh``: test accuracy of each checkpoint and method at each bit width."""
    reports = [json.loads(p.read_text()) for p in paths]
    widths = sorted({(r["w_bits"], r["a_bits"]) for r in reports}, reverse=True)
    lines = ["Post-training quantization of the shipped exact checkpoints (`benchmarks/quantize.sh`, 64 calibration "
             "images; test accuracy with weights and activations quantized, in plaintext; in parentheses the "
             "weights-only model, which is what runs under MPC):", "",
             "| checkpoint | float | method | " + " | ".join(f"W{w}A{a}" for w, a in widths) + " |",
             "|---|---:|---|" + "---:|" * len(widths)]
    for checkpoint in sorted({r["checkpoint"] for r in reports}):
        for method in PTQ_NAMES:
            row = {(r["w_bits"], r["a_bits"]): r["accuracy"] for r in reports
                   if r["checkpoint"] == checkpoint and r["method"] == method}
            if not row:
                continue
            float_acc = next(iter(row.values()))["float"]
            cells = [f"{row[w]['quantized']:.2%} ({row[w]['weights_only']:.2%})" if w in row else "–" for w in widths]
            lines.append(f"| {Path(checkpoint).name} | {float_acc:.2%} | {PTQ_NAMES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def front_table(path: Path) -> str:
    """``secvit supernet front --json``: the pool's Pareto front with the supernet's own weights."""
    front, data = json.loads(path.read_text()), path.stem.removeprefix("supernet_").removesuffix("_front")
    lines = [f"The {data} supernet's pool on its held-out tenth of the training split, with the supernet's weights "
             "(`secvit supernet front`): the subnets no other beats in both rounds and accuracy, and the four "
             "searched (`chosen`):", "", "| subnet | rounds | MB/image | held-out acc. | chosen |",
             "|---|---:|---:|---:|:---:|"]
    lines += [f"| {r['name']} | {r['rounds']} | {r['bytes'] / 1e6:.1f} | {r['validation_accuracy']:.2%} | "
              f"{'yes' if r['chosen'] else ''} |" for r in front]
    return "\n".join(lines)


def render_compression() -> str:
    """The block between ``<!-- compression:start -->`` and ``<!-- compression:end -->``."""
    parts, comp = [], RESULTS / "compression"
    teacher = json.loads((ROOT / "checkpoints" / "vit_lite_7_4_32-digits" / "meta.json").read_text())["test_accuracy"]
    if (comp / "distill_mpcformer.json").exists():
        parts.append(distill_table(comp / "distill_mpcformer.json", teacher))
    if (comp / "pareto_wan.json").exists():
        parts.append(pareto_table(comp / "pareto_wan.json"))
    for name, subject in (("gqa_modes", "GQA at G = 2 by query allocation (digits: 10 epochs from the exact "
                                        "teacher; kdgqa: plaintext only)"),
                          ("gqa_modes_fashion-mnist", "GQA at G = 2 by query allocation (Fashion-MNIST: 2 epochs "
                                                      "from the exact checkpoint; kdgqa: plaintext only)"),
                          ("pwca", "MPCFormer's policy, 15 epochs, with and without DCAL's pair-wise cross-attention"),
                          ("tinyclip", "Three blocks by TinyCLIP's progressive compression against one-shot "
                                       "inheritance (affinity distillation, 20 epochs in all)"),
                          ("supernet_digits", "Subnets of the MPC-budget supernet (digits; `supernet-rR`: the front "
                                              "member of R rounds, inherited and fine-tuned 10 epochs; `fresh-rR`: "
                                              "the same 10 epochs from a fresh start; `alone-rR`: trained on its "
                                              "own for 70, the supernet's 60 and the 10) beside MPCViT's search "
                                              "and compression"),
                          ("supernet_fashion-mnist", "Subnets of the MPC-budget supernet (Fashion-MNIST; inherited and "
                                                     "fine-tuned 2 epochs; `fresh-rR`: the 2 epochs from a fresh "
                                                     "start; `alone-rR`: trained on its own for 12)")):
        if (comp / f"{name}_front.json").exists():
            parts.append(front_table(comp / f"{name}_front.json"))
        if (comp / f"{name}.json").exists():
            parts.append(pareto_table(comp / f"{name}.json", subject))
    for path in sorted(comp.glob("gqa_kdgqa*.json")):
        kd, data = json.loads(path.read_text()), path.stem.removeprefix("gqa_kdgqa").lstrip("_") or "digits"
        parts.append(f"kdgqa at G = 2 ({data}): {kd['test_accuracy']:.2%} test accuracy in plaintext; under MPC "
                     f"{kd['secure']}.")
    quantized = sorted((RESULTS / "quantize").glob("*.json"))
    if quantized:
        parts.append(quantize_table(quantized))
    return "\n\n".join(parts) or "_No results yet: run `make compression`._"
