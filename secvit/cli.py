"""``secvit`` command line: train, cache-logits, party, demo, infer, check, rewrite, inherit, compress,
search, pipeline, protocols, models, profile, compare, pareto."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from .check import SPLITS
from .profile.commands import (add_compare_parser, add_pareto_parser, add_profile_parser, cmd_compare, cmd_pareto,
                               cmd_profile)
from .runtime.security import add_security_flags, security_from_args

__all__ = ["DEFAULT_CHECKPOINT", "main", "main_exit"]

DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parents[1] / "checkpoints" / "vit_lite_7_4_32-digits")
EXIT_BAD_INPUT = 2
console = Console()


def _add_mpc_args(p: argparse.ArgumentParser) -> None:
    add_security_flags(p)
    p.add_argument("--precision", type=int, default=16, help="fixed-point fractional bits (default 16)")
    p.add_argument("--batch-size", type=int, default=8, help="images per encrypted forward pass")


def _add_session_args(p: argparse.ArgumentParser) -> None:
    _add_mpc_args(p)
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--port", type=int, help="rendezvous port on 127.0.0.1 (default: a free one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secvit", description="Secure (MPC) inference for Vision Transformers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model in plaintext and write a checkpoint")
    p.add_argument("--model", default="vit_lite_7_4_32")
    p.add_argument("--data", default="digits", help="digits | npz:PATH | cifar10:DIR")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint (fine-tuning)")
    p.add_argument("--policy", help="rewrite by this policy first (name in configs/policies or a YAML path)")
    p.add_argument("--teacher", metavar="CHECKPOINT", help="the teacher of --distill kd|nkd|mpcformer")
    p.add_argument("--distill", choices=["kd", "nkd", "mpcformer", "uskd", "sparse"],
                   help="kd, nkd, mpcformer (two stages) with --teacher; uskd (no teacher); sparse with --cached-logits")
    p.add_argument("--temperature", type=float, default=4.0, help="KD temperature (default 4)")
    p.add_argument("--stage1-share", type=float, default=0.5, help="mpcformer: share of training in stage 1 (0.5)")
    p.add_argument("--cached-logits", metavar="FILE", help="sparse: teacher logits written by secvit cache-logits")
    p.add_argument("--gqa", type=int, metavar="G", help="group K/V heads into G per layer first (a rewritten model)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")

    p = sub.add_parser("cache-logits", help="store a teacher's top-K probabilities per sample and augmentation seed")
    p.add_argument("--teacher", required=True, metavar="CHECKPOINT")
    p.add_argument("--top-k", type=int, default=5, help="probabilities kept per sample (default 5)")
    p.add_argument("--epochs", type=int, default=10, help="augmented passes stored (training repeats them)")
    p.add_argument("--shift", type=int, default=3, help="largest translation in pixels (as secvit train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="file to write (safetensors)")

    p = sub.add_parser("party", help="run one party of a secure inference session")
    p.add_argument("--rank", type=int, required=True, help="0: model owner, 1: client, W: the dealer")
    p.add_argument("--world-size", type=int, default=2, help="computing parties (the dealer not counted)")
    p.add_argument("--rendezvous", required=True, help="tcp://HOST:PORT where rank 0 listens")
    p.add_argument("--role", choices=["owner", "client", "dealer"], help="checked against --rank")
    p.add_argument("--checkpoint", help="owner: the checkpoint; client: a directory with its meta.json")
    p.add_argument("--input", nargs="+", default=[], help="client: .npy/.png files or digits-test:N")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this party")
    p.add_argument("--timeout", type=float, default=60.0, help="longest wait for a peer, seconds")
    p.add_argument("--result", metavar="PATH", help="write this party's report as JSON")
    p.add_argument("--policy", help="rewrite the checkpoint's model by this policy (public, same on all parties)")
    p.add_argument("--verbose", action="store_true", help="print a line per stage")
    p.add_argument("--profile", action="store_true", help="record per-node time, bytes and rounds in the report")
    p.add_argument("--audit", action="store_true", help=argparse.SUPPRESS)
    _add_mpc_args(p)

    p = sub.add_parser("demo", help="secure inference of digits test images, checked against plaintext")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    p.add_argument("--n", type=int, default=8, help="number of digits test images")
    _add_session_args(p)

    p = sub.add_parser("infer", help="secure inference of your images (.png or .npy)")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    _add_session_args(p)

    sub.add_parser("models", help="list model names")

    p = sub.add_parser("rewrite", help="rewrite a model by a policy and report what changed")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint")
    source.add_argument("--model")
    p.add_argument("--policy", required=True, help="name in configs/policies or a YAML path")
    p.add_argument("--report", action="store_true", help="list every replaced module")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")

    p = sub.add_parser("check", help="accuracy: original vs rewritten vs fixed-point emulation vs real MPC")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    p.add_argument("--policy", help="rewrite by this policy (default: the checkpoint as it is)")
    p.add_argument("--n", type=int, default=200, help="test images for the plaintext and emulated accuracies")
    p.add_argument("--mpc-n", type=int, default=16, help="of those, images run under real MPC")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="images: test (default), train, all, or augmented (all, then translated copies)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    _add_mpc_args(p)

    p = sub.add_parser("inherit", help="a shallower / narrower student initialised from a teacher checkpoint")
    p.add_argument("--teacher", required=True, metavar="CHECKPOINT", help="a plain (not rewritten) checkpoint")
    p.add_argument("--depth", type=int, help="student blocks (teacher blocks 0, s, 2s, ... are kept)")
    p.add_argument("--mlp-ratio", type=float, help="student MLP ratio (the most important channels are kept)")
    p.add_argument("--heads", type=int, help="student heads per block (the most important are kept, same width)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")

    p = sub.add_parser("compress", help="fewer blocks by structural reparameterization (parallel branches, merged)")
    p.add_argument("--teacher", required=True, metavar="CHECKPOINT", help="a plain (not rewritten) checkpoint")
    p.add_argument("--depth", type=int, required=True, help="blocks of the result (teacher blocks grouped contiguously)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ramp", type=float, default=0.5, help="share of training over which lambda rises 0 -> 1")
    p.add_argument("--distill", choices=["kd", "none"], default="kd", help="KD from the teacher (default) or none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint directory to write")

    p = sub.add_parser("search", help="MPC-aware attention search (MPCViT): ReLU-softmax or scaling per head")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
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

    p = sub.add_parser("pipeline", help="teacher -> compress -> rewrite and distil -> check -> profile, from a YAML")
    p.add_argument("config", help="experiment YAML (e.g. configs/experiments/shipped-digits.yaml)")
    p.add_argument("--out", help="output directory (default: runs/<name>)")

    p = sub.add_parser("protocols", help="the MPC protocol registry: formula, rounds, bytes, accuracy")
    p.add_argument("--format", choices=["table", "md"], default="table")

    add_profile_parser(sub, DEFAULT_CHECKPOINT)
    add_compare_parser(sub, DEFAULT_CHECKPOINT)
    add_pareto_parser(sub)
    return parser


def cmd_train(a: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(model=a.model, data=a.data, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                      init=a.init, policy=a.policy, teacher=a.teacher, distill=a.distill, temperature=a.temperature,
                      stage1_share=a.stage1_share, cached_logits=a.cached_logits, gqa=a.gqa)
    meta = train(cfg, a.out)
    console.print(f"wrote {a.out}: test accuracy {meta['test_accuracy']:.4f} on {meta['test_images']} images")
    return 0


def cmd_cache_logits(a: argparse.Namespace) -> int:
    from .distill.sparse import cache_logits

    with console.status(f"running the teacher over {a.epochs} augmented passes ..."):
        cache = cache_logits(a.teacher, a.out, a.top_k, a.epochs, a.shift, a.seed)
    size = Path(a.out).stat().st_size
    console.print(f"wrote {a.out}: {cache.epochs} passes x {cache.seeds.shape[1]} samples, top {a.top_k}, "
                  f"{size / 1e6:.2f} MB")
    return 0


def _party_role(rank: int, world_size: int) -> str:
    return {0: "owner", 1: "client", world_size: "dealer"}.get(rank, "helper")


def cmd_party(a: argparse.Namespace) -> int:
    from protocols import backend

    from .checkpoint import load_meta, load_model
    from .inference import InferenceJob, secure_inference
    from .inputs import load_images
    from .runtime.party import run_dealer, run_party

    role = _party_role(a.rank, a.world_size)
    if a.role is not None and a.role != role:
        raise ValueError(f"--role {a.role} does not match --rank {a.rank} (rank {a.rank} is the {role})")
    if not 0 <= a.rank <= a.world_size or a.world_size < 2:
        raise ValueError(f"--rank must be in [0, {a.world_size}] and --world-size >= 2")
    settings = backend.MPCSettings(precision_bits=a.precision, timeout_s=a.timeout, **security_from_args(a))
    backend.set_threads(a.threads)
    if role == "dealer":
        if settings.provider != "dealer":
            raise ValueError(f"rank {a.rank} is the dealer, but --insecure-tfp lets party 0 deal")
        run_dealer(a.world_size, a.rendezvous, settings)
        return 0
    if a.checkpoint is None:
        raise ValueError("--checkpoint is required for the owner and the client")
    job = InferenceJob(checkpoint=a.checkpoint, policy=a.policy, batch_size=a.batch_size, audit=a.audit,
                       verbose=a.verbose, profile=a.profile)
    if role == "owner":
        job.model = load_model(a.checkpoint)[0]
    elif role == "client":
        job.images = load_images(a.input, load_meta(a.checkpoint), a.precision)[0]
    result = run_party(lambda ctx: secure_inference(ctx, job), a.rank, a.world_size, a.rendezvous, settings)
    if a.result:
        Path(a.result).write_text(json.dumps(result))
    return 0


def _print_session(report: Any, json_path: str | None) -> int:
    summary = report.summary()
    table = Table(title=f"secure inference: {summary['model']}, 2 parties, {summary['provider']}")
    for col in ("image", "label", "plaintext", "MPC", "max |logit diff|"):
        table.add_column(col, justify="right")
    for row in summary["per_image"]:
        ok = row["plaintext"] == row["mpc"]
        table.add_row(row["name"], "-" if row["label"] is None else str(row["label"]), str(row["plaintext"]),
                      f"[{'green' if ok else 'red'}]{row['mpc']}[/]", f"{row['max_abs_logit_error']:.2e}")
    console.print(table)
    agree = round(summary["agreement"] * summary["images"])
    console.print(
        f"agreement {agree}/{summary['images']} · {summary['seconds_per_image']:.2f} s/image · "
        f"{summary['bytes_per_image'] / 1e6:.1f} MB/image · {summary['rounds_per_forward']:.0f} rounds per forward "
        f"pass of {summary['batch_size']} (per party, online; offline {summary['offline']['0']['seconds']:.1f} s)"
    )
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["agreement"] == 1.0 else 1


def cmd_demo(a: argparse.Namespace) -> int:
    from .session import run_session

    with console.status(f"running {a.n} images through 2 parties ..."):
        report = run_session(a.checkpoint, [f"digits-test:{a.n}"], batch_size=a.batch_size, precision_bits=a.precision,
                             port=a.port, **security_from_args(a))
    return _print_session(report, a.json)


def cmd_infer(a: argparse.Namespace) -> int:
    from .session import run_session

    with console.status(f"running {len(a.images)} file(s) through 2 parties ..."):
        report = run_session(a.checkpoint, a.images, batch_size=a.batch_size, precision_bits=a.precision, port=a.port,
                             **security_from_args(a))
    return _print_session(report, a.json)


def cmd_models(a: argparse.Namespace) -> int:
    from .models import list_models

    for name in list_models():
        print(name)
    print("and timm: vit_*, deit_*, tiny_vit_* (e.g. deit_tiny_patch16_224)")
    return 0


def cmd_inherit(a: argparse.Namespace) -> int:
    from .compress.student import inherit_checkpoint

    meta = inherit_checkpoint(a.teacher, a.out, a.depth, a.mlp_ratio, a.heads)
    console.print(f"wrote {a.out}: teacher blocks {meta['inherited_layers']}, heads {meta['inherited_heads']}, test accuracy "
                  f"{meta['test_accuracy']:.4f} before distillation")
    return 0


def cmd_compress(a: argparse.Namespace) -> int:
    from .compress.depth import compress_depth

    meta = compress_depth(a.teacher, a.out, a.depth, a.epochs, a.lr, a.ramp, None if a.distill == "none" else a.distill,
                          seed=a.seed)
    console.print(f"wrote {a.out}: {a.depth} blocks from teacher groups {meta['branch_groups']}, test accuracy "
                  f"{meta['test_accuracy']:.4f} (merge error {meta['merge_max_abs_error']:.1e})")
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    from .search.search import run_search

    max_bytes = int(a.max_mb * 1e6) if a.max_mb is not None else None
    result = run_search(a.checkpoint, a.out, a.fraction, max_bytes, a.base_policy, a.lam, a.epochs,
                        alpha_lr=a.alpha_lr, max_rounds=a.max_rounds)
    console.print(f"wrote {a.out}: {result['relu_heads']} of {result['heads']} heads keep ReLU-softmax")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_pipeline(a: argparse.Namespace) -> int:
    from .pipeline.config import load_experiment
    from .pipeline.run import run_pipeline

    cfg = load_experiment(a.config)
    out = Path(a.out or Path("runs") / cfg.name)
    run_pipeline(cfg, out, console)
    console.print(f"wrote {out}/summary.json and summary.md")
    return 0


def cmd_rewrite(a: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .models import create_model
    from .rewrite import load_policy, rewrite

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


def cmd_check(a: argparse.Namespace) -> int:
    from .check import run_check

    with console.status(f"checking {a.n} images in plaintext and emulation, {a.mpc_n} under MPC ..."):
        report = run_check(a.checkpoint, a.policy, a.n, a.mpc_n, batch_size=a.batch_size, precision_bits=a.precision,
                           split=a.split, **security_from_args(a))
    table = Table(title=f"accuracy, policy {report['policy']}")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_column("images", justify="right")
    for key, images in (("original", report["images"]), ("reference", report["images"]),
                        ("emulation", report["images"]), ("mpc", report["mpc_images"])):
        table.add_row(key, f"{report['accuracy'][key]:.4f}", str(images))
    console.print(table)
    console.print(
        f"MPC vs reference: agreement {report['agreement_mpc_vs_reference']:.4f}, max |logit err| "
        f"{report['max_abs_logit_error_mpc_vs_reference']:.2e}; MPC vs emulation: agreement "
        f"{report['agreement_mpc_vs_emulation']:.4f}, max |logit err| {report['max_abs_logit_error_mpc_vs_emulation']:.2e}"
    )
    risk = report["truncation"]
    exact = ("none expected" if risk["exact_corrupted_images_per_million"] == 0
             else "[red]values beyond exact truncation's range[/]")
    console.print(
        f"truncation ({risk['mode']}): {risk['elements_per_image_mpc']:,.0f} elements per image; largest |x| "
        f"2^{risk['largest_magnitude_log2']:.1f} of 2^{risk['exact_range_log2']:.0f} (exact: {exact}); local "
        f"truncation would corrupt {risk['local_corrupted_images_per_million']:,.0f} images per million"
    )
    if report["insecure"]:
        console.print(f"[yellow]insecure run: {'; '.join(report['insecure'])}[/]")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["agreement_mpc_vs_reference"] == 1.0 else 1


def cmd_protocols(a: argparse.Namespace) -> int:
    from .protocol_table import SHAPES, protocol_rows, to_markdown

    rows = protocol_rows()
    if a.format == "md":
        print(to_markdown(rows))
        return 0
    table = Table(title="MPC protocols (per party, 2 parties, TFP; " +
                  ", ".join(f"{k} on {'x'.join(map(str, v))}" for k, v in SHAPES.items()) + ")")
    for col in ("protocol", "kind", "formula", "rounds", "B/elem", "max error", "range"):
        table.add_column(col, justify="right" if col in ("rounds", "B/elem", "max error") else "left",
                         no_wrap=col == "protocol")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["formula"], str(r["rounds"]), f"{r['bytes_per_element']:.0f}",
                      f"{r['max_error']:.1e}", f"[{r['range'][0]:g}, {r['range'][1]:g}]")
    console.print(table)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "cache-logits": cmd_cache_logits, "party": cmd_party, "demo": cmd_demo, "infer": cmd_infer, "models": cmd_models,
    "protocols": cmd_protocols, "rewrite": cmd_rewrite, "check": cmd_check, "inherit": cmd_inherit,
    "compress": cmd_compress, "search": cmd_search, "pipeline": cmd_pipeline,
    "profile": lambda a: cmd_profile(a, console), "compare": lambda a: cmd_compare(a, console),
    "pareto": lambda a: cmd_pareto(a, console),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input, before any secret is shared)."""
    from .checkpoint import CheckpointError
    from .inputs import InputError
    from .runtime.launcher import PartyFailure
    from .rewrite.policy import PolicyError
    from .runtime.party import RendezvousError

    a = build_parser().parse_args(argv)
    try:
        return COMMANDS[a.command](a)
    except (InputError, CheckpointError, RendezvousError, PolicyError, ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"secvit: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PartyFailure as e:
        print(f"secvit: a party failed: {e}", file=sys.stderr)
        return 1


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
