"""Run an experiment: teacher -> compress -> (search) rewrite and distil -> check -> profile.

Structural compression (reparameterization, inheritance) acts on the plain teacher, so it
runs before rewriting; each student is then rewritten by its policy (or a searched one)
and fine-tuned from the (compressed) model, distilling from the teacher. Every artefact
lands in the output directory::

    teacher/ (when trained)  compressed/ (or compressed_depthD/ per progressive stage)  <student>/checkpoint/  <student>/policy.yaml (searched)
    <model>.check.json  <model>.profile.json  teacher_logits.safetensors (sparse)
    summary.json  summary.md  pareto.png (accuracy against cost)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from ..checkpoint import load_meta
from ..train import TEACHER_METHODS, TrainConfig, train
from .config import ExperimentConfig

__all__ = ["run_pipeline", "summary_markdown"]


class _Stages:
    """Numbered stage headers on the console, and each stage's wall time."""

    def __init__(self, console: Console, total: int):
        self.console, self.total, self.done, self.seconds = console, total, 0, {}

    def run(self, title: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        self.console.rule(f"[{self.done}/{self.total}] {title}")
        start = time.perf_counter()
        result = fn()
        self.seconds[title] = round(time.perf_counter() - start, 1)
        return result


def _stage_count(cfg: ExperimentConfig) -> int:
    base = 1 + (cfg.compress is not None)  # teacher (and compressed): made, then checked and profiled
    students = sum(3 + (s.search is not None) + (s.train.get("distill") == "sparse") for s in cfg.students)
    return 3 * base + students  # each student: (search, cache logits,) train, check, profile


def _preflight(cfg: ExperimentConfig) -> None:
    """Fail before the first stage on what would fail later: the teacher checkpoint, the
    students' policies, the network profile."""
    from ..network import load_network
    from ..rewrite import load_policy

    if "checkpoint" in cfg.teacher:
        load_meta(cfg.teacher["checkpoint"])
    for spec in cfg.students:
        if spec.policy is not None:
            load_policy(spec.policy)
        if spec.search is not None:
            load_policy(spec.search.get("base_policy", "mpcvit"))
    load_network(cfg.profile["network"])


def _teacher(cfg: ExperimentConfig, out: Path) -> str:
    if "checkpoint" in cfg.teacher:
        return cfg.teacher["checkpoint"]
    train(TrainConfig(**cfg.teacher["train"]), out / "teacher")
    return str(out / "teacher")


def _progressive(c: dict[str, Any], teacher: str, out: Path) -> str:
    """TinyCLIP's multi-stage compression: at each depth, inherit from the previous stage
    (the teacher first), then distil from the teacher; returns the last stage."""
    from ..compress.student import inherit_checkpoint

    options = {k: v for k, v in c.items() if k != "depths"}
    options["distill"] = options.get("distill", "kd")
    previous = teacher
    for depth in c["depths"]:
        stage = out / f"compressed_depth{depth}"
        inherit_checkpoint(previous, stage / "inherited", depth)
        train(TrainConfig(init=str(stage / "inherited"), teacher=teacher, **options), stage / "checkpoint")
        previous = str(stage / "checkpoint")
    return previous


def _compress(cfg: ExperimentConfig, teacher: str, out: Path) -> str:
    c = {k: v for k, v in cfg.compress.items() if k != "method"}
    if cfg.compress["method"] == "progressive":
        return _progressive(c, teacher, out)
    if cfg.compress["method"] == "inherit":
        from ..compress.student import inherit_checkpoint

        inherit_checkpoint(teacher, out / "compressed", c.get("depth"), c.get("mlp_ratio"), c.get("heads"))
    else:
        from ..compress.depth import compress_depth

        if c.get("distill") == "none":
            c["distill"] = None
        compress_depth(teacher, out / "compressed", **c)
    return str(out / "compressed")


def _search(spec, base: str, out: Path) -> str:
    from ..search.search import run_search

    s = dict(spec.search)
    max_mb = s.pop("max_mb", None)
    policy = out / spec.name / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    result = run_search(base, policy, max_bytes=int(max_mb * 1e6) if max_mb is not None else None, **s)
    (out / spec.name / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    return str(policy)


def _row(name: str, role: str, ckpt: str, check: dict, profile: dict) -> dict[str, Any]:
    meta = load_meta(ckpt)
    cost = profile["totals"]
    images = profile["images"]
    return {"name": name, "role": role, "checkpoint": ckpt, "policy": check["policy"],
            "depth": meta.depth, "test_accuracy": meta.extra.get("test_accuracy"),
            "distill": (meta.extra.get("train_config") or {}).get("distill"),
            "check": {k: check[k] for k in ("accuracy", "images", "mpc_images", "agreement_mpc_vs_reference",
                                            "max_abs_logit_error_mpc_vs_emulation")},
            "cost": {"network": profile["network"]["name"], "rounds": cost["rounds"],
                     "mb_per_image": cost["bytes_per_party"] / images / 1e6,
                     "seconds_per_image": cost["seconds"] / images,
                     "estimated_seconds_per_image": cost["estimated_seconds"] / images}}


def _evaluate(cfg: ExperimentConfig, stages: _Stages, name: str, role: str, ckpt: str, out: Path) -> dict[str, Any]:
    from ..check import run_check
    from ..profile.run import run_profile

    check = stages.run(f"check {name}", lambda: run_check(ckpt, None, cfg.check["n"], cfg.check["mpc_n"],
                                                               batch_size=cfg.check["batch_size"]))
    (out / f"{name}.check.json").write_text(json.dumps(check, indent=2) + "\n")
    report = stages.run(f"profile {name}", lambda: run_profile(ckpt, None, cfg.profile["n"],
                                                              network=cfg.profile["network"]))
    report.write_json(out / f"{name}.profile.json")
    return _row(name, role, ckpt, check, report.to_dict())


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Mark each row's place on the accuracy/cost Pareto front and chart them."""
    from ..profile.plots import plot_tradeoff
    from ..profile.tradeoff import pareto_front

    flat = [{"name": r["name"], "test_accuracy": r["test_accuracy"] or 0.0, **r["cost"]} for r in rows]
    for row, flat_row, front in zip(rows, flat, pareto_front(flat)):
        row["pareto"] = flat_row["pareto"] = front
    plot_tradeoff(flat, rows[0]["cost"]["network"], path)


def run_pipeline(cfg: ExperimentConfig, out: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Run every stage of ``cfg`` into ``out``; returns the summary (also written as
    ``summary.json`` and ``summary.md``).

    Raises:
        CheckpointError, PolicyError, NetworkError: a bad teacher path, policy or network
            (before the first stage).
        ValueError: a later stage's input is wrong (the stage names it).
    """
    _preflight(cfg)
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(console, _stage_count(cfg))
    teacher = stages.run("teacher", lambda: _teacher(cfg, out))
    base = stages.run(f"compress ({cfg.compress['method']})", lambda: _compress(cfg, teacher, out)) \
        if cfg.compress else teacher
    rows = [_evaluate(cfg, stages, "teacher", "teacher", teacher, out)]
    if cfg.compress:
        rows.append(_evaluate(cfg, stages, "compressed", "compressed", base, out))
    for spec in cfg.students:
        policy = stages.run(f"search {spec.name}", lambda: _search(spec, base, out)) if spec.search else spec.policy
        options = dict(spec.train)
        if options.get("distill") in TEACHER_METHODS:
            options["teacher"] = teacher
        if options.get("distill") == "sparse":
            from ..distill.sparse import cache_logits

            options["cached_logits"] = str(out / "teacher_logits.safetensors")
            stages.run(f"cache teacher logits for {spec.name}",
                       lambda: cache_logits(teacher, options["cached_logits"], spec.top_k, options.get("epochs", 40)))
        ckpt = str(out / spec.name / "checkpoint")
        stages.run(f"train {spec.name} ({Path(str(policy)).stem}, distill {options.get('distill') or 'none'})",
                   lambda: train(TrainConfig(init=base, policy=policy, **options), ckpt))
        rows.append(_evaluate(cfg, stages, spec.name, "student", ckpt, out))
    _plot(rows, out / "pareto.png")
    summary = {"name": cfg.name, "config": cfg.source, "description": cfg.description, "models": rows,
               "stage_seconds": stages.seconds}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    console.print(summary_markdown(summary))
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table (one row per model)."""
    network = summary["models"][0]["cost"]["network"]
    lines = [f"### {summary['name']}", "",
             f"| model | policy | blocks | distill | test acc. | emulation acc. | MPC acc. (n) | MPC = reference "
             f"| rounds | MB/image | s/image (measured) | s/image ({network}, est.) |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["models"]:
        acc, cost = r["check"]["accuracy"], r["cost"]
        test = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.2%}"
        lines.append(f"| {r['name']} | {r['policy']} | {r['depth']} | {r['distill'] or '-'} | "
                     f"{test} | {acc['emulation']:.2%} | {acc['mpc']:.2%} ({r['check']['mpc_images']}) | "
                     f"{r['check']['agreement_mpc_vs_reference']:.0%} | {cost['rounds']:.0f} | {cost['mb_per_image']:.1f} | "
                     f"{cost['seconds_per_image']:.2f} | {cost['estimated_seconds_per_image']:.1f} |")
    return "\n".join(lines) + "\n"
