"""The README's tables of [7 of 7]'s tasks, from ``benchmarks/results/tasks/*.json``
(``benchmarks/tasks.sh``): class-incremental learning by method and step, and the
holographic-autofocus regressor's error in plaintext and under MPC with its secure cost.
Rendered between ``<!-- tasks:start -->`` and ``<!-- tasks:end -->`` by
``benchmarks/readme_tables.py``."""

from __future__ import annotations

import json
from pathlib import Path

TASKS = Path(__file__).resolve().parent / "results" / "tasks"

METHOD_NAMES = {"gated": "gated class-attention + cascaded drift compensation (no exemplars)",
                "finetune": "fine-tuning (the forgetting baseline)",
                "joint": "joint training, every image kept (upper bound)"}
PAPER_HOLO_MAE_UM = 0.3  # the seed's tiny ViTs on simulated holograms
PAPER_DEPTH_OF_FIELD_UM = 15.0


def continual_table(data: str) -> str:
    """Accuracy on every class seen so far after each task, one row per method."""
    runs = {m: json.loads((TASKS / f"continual_{data}_{m}.json").read_text())
            for m in METHOD_NAMES if (TASKS / f"continual_{data}_{m}.json").exists()}
    if not runs:
        return ""
    first = next(iter(runs.values()))
    tasks = first["continual"]["tasks"]
    lines = [f"Class-incremental {data}, {len(tasks)} tasks of {len(tasks[0])} classes, {first['model']} with a "
             f"class-attention last block, {first['continual']['epochs_per_task']} epochs per task (accuracy on "
             f"the test images of every class seen so far, no task ID; `benchmarks/tasks.sh`):", "",
             "| method | " + " | ".join(f"after task {t + 1}" for t in range(len(tasks))) + " |",
             "|---|" + "---:|" * len(tasks)]
    for method, run in runs.items():
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(f"{a:.2%}" for a in run["continual"]["seen_accuracy"])
                     + " |")
    check = TASKS / f"continual_{data}_gated_check.json"
    if check.exists():
        c = json.loads(check.read_text())
        lines += ["", f"The gated model under MPC (`secvit check --mpc-n {c['mpc_images']}`, {c['provider']}): "
                      f"{c['accuracy']['mpc']:.2%} on {c['mpc_images']} test images, "
                      f"{c['agreement_mpc_vs_reference']:.0%} agreement with the plaintext reference, "
                      f"{c['bytes_per_image_mpc'] / 1e6:.1f} MB per image and party, "
                      f"{c['rounds_per_forward_mpc']:.0f} rounds per forward pass."]
    return "\n".join(lines)


def holo_table() -> str:
    """The regressor's mean absolute error (µm) beside the seed's figures, and its secure cost."""
    path = TASKS / "holo_check.json"
    if not path.exists():
        return ""
    r = json.loads(path.read_text())
    mae = r["mae"]
    return "\n".join([
        f"Holographic autofocus on `holo-sim` ({Path(r['checkpoint']).name}; `secvit check --n {r['images']} "
        f"--mpc-n {r['mpc_images']}`, 2 parties and a {r['provider']}; the seed's figures for comparison):", "",
        "| model | plaintext MAE | emulation MAE | MPC MAE | MPC vs plaintext (max) | within 1% of the target's std |"
        " s / hologram | MB / hologram | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {Path(r['checkpoint']).name} | {mae['reference']:.2f} µm ({r['images']}) | {mae['emulation']:.2f} µm | "
        f"{mae['mpc']:.2f} µm ({r['mpc_images']}) | {r['error_mpc_vs_reference']['max']:.3f} µm | "
        f"{r['agreement_mpc_vs_reference']:.0%} | {r['seconds_per_image_mpc']:.2f} | "
        f"{r['bytes_per_image_mpc'] / 1e6:.1f} | {r['rounds_per_forward_mpc']:.0f} |",
        f"| seed paper, tiny ViT | < {PAPER_HOLO_MAE_UM} µm | | | | | | | |",
        "", f"Depth of field of the seed's microscope: {PAPER_DEPTH_OF_FIELD_UM:.0f} µm; the axial range: 92 µm."])


def render_tasks() -> str:
    """Every table of the tasks block, or a pointer to the command that makes them."""
    parts = [continual_table("digits"), continual_table("fashion-mnist"), holo_table()]
    return "\n\n".join(p for p in parts if p) or "_No results yet: run `benchmarks/tasks.sh` (`make compression`)._"
