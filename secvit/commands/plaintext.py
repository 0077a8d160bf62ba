"""The plaintext commands: ``train``, ``import``, ``quantize``, ``cache-logits``, ``models``, ``inherit``,
``average``, ``compress``, ``search``, ``pipeline`` and ``rewrite``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from ..errors import UsageError
from . import add_threads, console

__all__ = ["cmd_average", "cmd_cache_logits", "cmd_compress", "cmd_import", "cmd_inherit", "cmd_models", "cmd_pipeline",
           "cmd_rewrite", "cmd_search", "cmd_train"]


def cmd_train(a: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    cfg = TrainConfig(model=a.model, data=a.data, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                      init=a.init, policy=a.policy, teacher=a.teacher, distill=a.distill, temperature=a.temperature,
                      stage1_share=a.stage1_share, cached_logits=a.cached_logits, gqa=a.gqa, gqa_mode=a.gqa_mode,
                      pwca=a.pwca, glca=a.glca, clip_grad=a.clip_grad, regression_loss=a.regression_loss,
                      shift=a.shift, flip=a.flip, warmup_epochs=a.warmup_epochs, tasks=a.tasks,
                      continual=a.continual, threads=a.threads)
    if cfg.tasks is not None:
        from ..continual.incremental import train_continual

        meta = train_continual(cfg, a.out, resume=a.resume)
    else:
        meta = train(cfg, a.out, resume=a.resume)
    from ..task import score_key, score_text

    key, unit = score_key(meta)
    console.print(f"wrote {a.out}: {score_text(meta[key], unit)} on {meta['test_images']} images")
    return 0


def cmd_quantize(a: argparse.Namespace) -> int:
    from ..quantize.run import quantize_checkpoint

    with console.status(f"quantizing {a.checkpoint} ({a.method}, W{a.w_bits}A{a.a_bits}) ..."):
        report = quantize_checkpoint(a.checkpoint, a.w_bits, a.a_bits, a.method, a.out, a.calib, a.tune_steps)
    acc = report["accuracy"]
    console.print(f"{a.method} W{a.w_bits}A{a.a_bits} on {report['test_images']} test images: float {acc['float']:.4f}, "
                  f"quantized {acc['quantized']:.4f}, weights only (what MPC runs) {acc['weights_only']:.4f}")
    console.print(f"under MPC: kept {report['secure_engine']['kept']}; dropped {report['secure_engine']['dropped']}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    from ..importer import import_weights

    try:
        args = json.loads(a.model_args)
    except json.JSONDecodeError as e:
        raise UsageError(f"--model-args {a.model_args!r}: not a JSON object ({e})") from None
    meta = import_weights(a.model, args, a.weights, a.out, data=a.data, norm=a.norm)
    accuracy = (f": test accuracy {meta['test_accuracy']:.4f} on {meta['test_images']} {a.data} images"
                if "test_accuracy" in meta else " (no --data: accuracy not measured)")
    console.print(f"wrote {a.out}{accuracy}")
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


def cmd_average(a: argparse.Namespace) -> int:
    from ..average import average_checkpoints
    from ..task import score_key, score_text

    meta = average_checkpoints(a.checkpoints, a.out)
    key, unit = score_key(meta)
    parts = ", ".join(f"{i['checkpoint']} {score_text(i[key], unit)}" for i in meta["averaged_from"])
    console.print(f"wrote {a.out}: {score_text(meta[key], unit)} (the average of {parts})")
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


def add_parsers(sub: argparse._SubParsersAction, default_checkpoint: str) -> None:
    """Add this group's commands (train, import, quantize, cache-logits, models, rewrite, inherit, compress,
    search, pipeline) to ``sub``."""
    p = sub.add_parser("train", help="train a model in plaintext and write a checkpoint")
    p.add_argument("--model", default="vit_lite_7_4_32")
    p.add_argument("--data", default="digits", help="digits | fashion-mnist[:DIR] | mnist:DIR | idx:DIR | npz:PATH | "
                                                    "cifar10:DIR")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-epochs", type=int, default=2, help="linear warm-up before the cosine decay (default 2)")
    p.add_argument("--shift", type=int, default=3, help="largest random translation in pixels (default 3)")
    p.add_argument("--flip", action="store_true", help="also mirror half the training images left to right")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint (fine-tuning)")
    p.add_argument("--policy", help="rewrite by this policy first (name in configs/policies or a YAML path)")
    p.add_argument("--teacher", metavar="CHECKPOINT", help="the teacher of --distill kd|nkd|mpcformer")
    p.add_argument("--distill", choices=["kd", "nkd", "mpcformer", "affinity", "uskd", "sparse"],
                   help="kd, nkd, mpcformer (two stages), affinity (TinyCLIP's token affinities) with --teacher; uskd "
                        "(no teacher); sparse with --cached-logits")
    p.add_argument("--temperature", type=float, default=4.0, help="KD temperature (default 4)")
    p.add_argument("--stage1-share", type=float, default=0.5, help="mpcformer: share of training in stage 1 (0.5)")
    p.add_argument("--cached-logits", metavar="FILE", help="sparse: teacher logits written by secvit cache-logits")
    p.add_argument("--gqa", type=int, metavar="G", help="group K/V heads into G per layer first (a rewritten model)")
    p.add_argument("--gqa-mode", default="mean",
                   help="query heads per group: mean (H/G consecutive), dgqa (from the keys' norms over training, "
                        "fixed at the end), kdgqa (per input: plaintext only), pgqa (mean, noisy attention maps "
                        "in training)")
    p.add_argument("--pwca", action="store_true",
                   help="DCAL's pair-wise cross-attention in training (another image's keys and values as "
                        "distractors, its loss added); inference and secure cost unchanged")
    p.add_argument("--glca", action="store_true",
                   help="DCAL's global-local cross-attention: a class-attention branch after the last block, "
                        "from its weights, added to the logits (kept at inference: the profiler reports it)")
    p.add_argument("--regression-loss", default="l1", choices=("l1", "mse"),
                   help="regression data (holo-sim): the loss on the standardised target (l1: default; the "
                        "mean absolute error in the target's unit is reported)")
    p.add_argument("--clip-grad", type=float, metavar="NORM",
                   help="clip the gradient's global norm to NORM before each step (BatchNorm ViTs need it)")
    p.add_argument("--tasks", type=int, metavar="T",
                   help="class-incremental: the classes in T tasks of consecutive labels, trained in turn (--epochs "
                        "each) without exemplars; a class-attention ViT-Lite scored on all seen classes after each")
    p.add_argument("--continual", default="gated", choices=("gated", "finetune", "joint"),
                   help="with --tasks: gated (gated class-attention and cascaded drift compensation, no task ID), "
                        "finetune (the forgetting baseline), joint (every image kept: the upper bound)")
    add_threads(p)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run from its last completed epoch (same options; same final weights)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("import", help="a plaintext-trained timm or secvit state_dict as a checkpoint")
    p.add_argument("--model", required=True, help="a built-in or timm model name (secvit models)")
    p.add_argument("--model-args", default="{}", metavar="JSON",
                   help='constructor arguments, e.g. \'{"num_classes": 10, "img_size": 28, "in_chans": 1}\'')
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a state_dict: .safetensors, or a PyTorch file (loaded with weights_only=True)")
    p.add_argument("--data", help="a dataset spec: its test split measures the import (as in secvit train)")
    p.add_argument("--norm", metavar="MEAN,STD", help="the training normalisation: MEAN,STD or C means then C stds "
                                                      "(default: fitted on --data's training split)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("quantize", help="post-training quantization (RepQ-ViT, I&S-ViT, min-max) of a plain checkpoint")
    p.add_argument("--checkpoint", default=default_checkpoint)
    p.add_argument("--method", default="repq", help="repq (default), isvit or minmax (per-tensor baseline)")
    p.add_argument("--w-bits", type=int, default=8, help="weight bits (default 8)")
    p.add_argument("--a-bits", type=int, default=8, help="activation bits (default 8)")
    p.add_argument("--calib", type=int, default=64, help="calibration images from the training split (default 64)")
    p.add_argument("--tune-steps", type=int, default=20, help="isvit: optimisation steps per tuning stage (20)")
    p.add_argument("--out", help="write the quantized checkpoint (its weights; activation quantizers are plaintext-only)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("cache-logits", help="store a teacher's top-K probabilities per sample and augmentation seed")
    p.add_argument("--teacher", required=True, metavar="CHECKPOINT")
    p.add_argument("--top-k", type=int, default=5, help="probabilities kept per sample (default 5)")
    p.add_argument("--epochs", type=int, default=10, help="augmented passes stored (training repeats them)")
    p.add_argument("--shift", type=int, default=3, help="largest translation in pixels (as secvit train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="file to write (safetensors)")
    p.set_defaults(func=cmd_cache_logits)

    p = sub.add_parser("models", help="list model names")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("rewrite", help="rewrite a model by a policy and report what changed")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint")
    source.add_argument("--model")
    p.add_argument("--policy", required=True, help="name in configs/policies or a YAML path")
    p.add_argument("--report", action="store_true", help="list every replaced module")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.set_defaults(func=cmd_rewrite)

    p = sub.add_parser("inherit", help="a shallower / narrower student initialised from a teacher checkpoint")
    p.add_argument("--teacher", required=True, metavar="CHECKPOINT", help="a plain (not rewritten) checkpoint")
    p.add_argument("--depth", type=int, help="student blocks (teacher blocks 0, s, 2s, ... are kept)")
    p.add_argument("--mlp-ratio", type=float, help="student MLP ratio (the most important channels are kept)")
    p.add_argument("--heads", type=int, help="student heads per block (the most important are kept, same width)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.set_defaults(func=cmd_inherit)

    p = sub.add_parser("average", help="the uniform average of checkpoints' weights (one architecture and policy)")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="two or more checkpoints of one architecture, policy and data (e.g. warm restarts of a run)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("compress", help="fewer blocks by structural reparameterization (parallel branches, merged)")
    p.add_argument("--teacher", required=True, metavar="CHECKPOINT", help="a plain (not rewritten) checkpoint")
    p.add_argument("--depth", type=int, required=True, help="blocks of the result (teacher blocks grouped contiguously)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ramp", type=float, default=0.5, help="share of training over which lambda rises 0 -> 1")
    p.add_argument("--distill", choices=["kd", "none"], default="kd", help="KD from the teacher (default) or none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("search", help="MPC-aware attention search (MPCViT): ReLU-softmax or scaling per head")
    p.add_argument("--checkpoint", default=default_checkpoint)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--fraction", type=float, help="share of all heads kept as ReLU-softmax (0..1)")
    budget.add_argument("--max-mb", type=float, help="ReLU-softmax MB per image per party allowed")
    budget.add_argument("--max-rounds", type=int, help="ReLU-softmax rounds allowed (paid once per layer using it)")
    p.add_argument("--base-policy", default="mpcvit", help="activation and norm choices (default mpcvit)")
    p.add_argument("--lam", type=float, default=1.0, help="weight of the cost term (default 1)")
    p.add_argument("--alpha-lr", type=float, default=1e-2, help="learning rate of the alphas (default 1e-2)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", required=True, help="policy YAML to write")
    p.add_argument("--json", metavar="PATH", help="write the alphas and the choice as JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("pipeline", help="teacher -> compress -> rewrite and distil -> check -> profile, from a YAML")
    p.add_argument("config", help="experiment YAML (e.g. configs/experiments/shipped-digits.yaml)")
    p.add_argument("--out", help="output directory (default: runs/<name>)")
    p.set_defaults(func=cmd_pipeline)
