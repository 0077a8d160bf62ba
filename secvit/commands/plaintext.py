"""The plaintext commands: ``train``, ``cache-logits``, ``models``, ``inherit``,
``compress``, ``search``, ``pipeline`` and ``rewrite``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from . import console

__all__ = ["cmd_cache_logits", "cmd_compress", "cmd_inherit", "cmd_models", "cmd_pipeline", "cmd_rewrite",
           "cmd_search", "cmd_train"]


def cmd_train(a: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    cfg = TrainConfig(model=a.model, data=a.data, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                      init=a.init, policy=a.policy, teacher=a.teacher, distill=a.distill, temperature=a.temperature,
                      stage1_share=a.stage1_share, cached_logits=a.cached_logits, gqa=a.gqa)
    meta = train(cfg, a.out)
    console.print(f"wrote {a.out}: test accuracy {meta['test_accuracy']:.4f} on {meta['test_images']} images")
    return 0


def cmd_cache_logits(a: argparse.Namespace) -> int:
    from ..distill.sparse import cache_logits

    with console.status(f"running the teacher over {a.epochs} augmented passes ..."):
        cache = cache_logits(a.teacher, a.out, a.top_k, a.epochs, a.shift, a.seed)
    size = Path(a.out).stat().st_size
    console.print(f"wrote {a.out}: {cache.epochs} passes x {cache.seeds.shape[1]} samples, top {a.top_k}, "
                  f"{size / 1e6:.2f} MB")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from ..models import list_models

    for name in list_models():
        print(name)
    print("and timm: vit_*, deit_*, tiny_vit_* (e.g. deit_tiny_patch16_224)")
    return 0


def cmd_inherit(a: argparse.Namespace) -> int:
    from ..compress.student import inherit_checkpoint

    meta = inherit_checkpoint(a.teacher, a.out, a.depth, a.mlp_ratio, a.heads)
    console.print(f"wrote {a.out}: teacher blocks {meta['inherited_layers']}, heads {meta['inherited_heads']}, test accuracy "
                  f"{meta['test_accuracy']:.4f} before distillation")
    return 0


def cmd_compress(a: argparse.Namespace) -> int:
    from ..compress.depth import compress_depth

    meta = compress_depth(a.teacher, a.out, a.depth, a.epochs, a.lr, a.ramp, None if a.distill == "none" else a.distill,
                          seed=a.seed)
    console.print(f"wrote {a.out}: {a.depth} blocks from teacher groups {meta['branch_groups']}, test accuracy "
                  f"{meta['test_accuracy']:.4f} (merge error {meta['merge_max_abs_error']:.1e})")
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    from ..search.search import run_search

    max_bytes = int(a.max_mb * 1e6) if a.max_mb is not None else None
    result = run_search(a.checkpoint, a.out, a.fraction, max_bytes, a.base_policy, a.lam, a.epochs,
                        alpha_lr=a.alpha_lr, max_rounds=a.max_rounds)
    console.print(f"wrote {a.out}: {result['relu_heads']} of {result['heads']} heads keep ReLU-softmax")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_pipeline(a: argparse.Namespace) -> int:
    from ..pipeline.config import load_experiment
    from ..pipeline.run import run_pipeline

    cfg = load_experiment(a.config)
    out = Path(a.out or Path("runs") / cfg.name)
    run_pipeline(cfg, out, console)
    console.print(f"wrote {out}/summary.json and summary.md")
    return 0


def cmd_rewrite(a: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..models import create_model
    from ..rewrite import load_policy, rewrite

    model = load_model(a.checkpoint)[0] if a.checkpoint else create_model(a.model)
    _, report = rewrite(model, load_policy(a.policy))
    counts = Table(title=f"op counts, policy {report.policy}")
    for col in ("op", "before", "after"):
        counts.add_column(col, justify="left" if col == "op" else "right")
    for key in sorted(set(report.before) | set(report.after)):
        counts.add_row(key, str(report.before.get(key, 0)), str(report.after.get(key, 0)))
    console.print(counts)
    for p in report.passes:
        console.print(f"{p.name}: {len(p.changes)} change(s)" if p.changed else f"{p.name}: unchanged")
        if a.report:
            for module, now in p.changes:
                console.print(f"  {module} -> {now}")
    if a.json:
        Path(a.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
