"""The commands that run secure inference sessions: ``party``, ``keys``, ``demo``, ``precision``,
``infer``, ``check`` and ``protocols`` (the cost table of the protocol registry), and
their parsers (:func:`add_parsers`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from ..check import SPLITS
from ..errors import UsageError
from ..runtime.security import add_security_flags, security_from_args
from ..truncation_risk import describe
from . import console

__all__ = ["add_parsers", "cmd_check", "cmd_demo", "cmd_infer", "cmd_keys", "cmd_party", "cmd_precision",
           "cmd_protocols"]


def cmd_party(a: argparse.Namespace) -> int:
    from protocols import backend

    from ..checkpoint import DEFAULT_PRECISION, load_meta, load_model
    from ..inference import InferenceJob, secure_inference
    from ..inputs import load_images
    from ..runtime.party import run_dealer, run_party
    from ..runtime.roles import role as role_of
    from ..runtime.roles import role_name

    role = role_of(a.rank, a.world_size)
    if a.role is not None and a.role != role:
        raise UsageError(f"--role {a.role} does not match --rank {a.rank} (rank {a.rank} is the {role})")
    if not 0 <= a.rank <= a.world_size or a.world_size < 2:
        raise UsageError(f"--rank must be in [0, {a.world_size}] and --world-size >= 2")
    channels = "plaintext" if a.insecure_plaintext_channels else "tls"
    if a.precision is None:  # the checkpoint's; the dealer, which has none, is told by --precision
        a.precision = load_meta(a.checkpoint).precision_bits if a.checkpoint else DEFAULT_PRECISION
    try:
        settings = backend.MPCSettings(precision_bits=a.precision, timeout_s=a.timeout, channels=channels,
                                       **security_from_args(a))
        endpoint = backend.Endpoint(a.rendezvous, a.keys, a.listen, a.advertise, lambda r: role_name(r, a.world_size))
    except ValueError as e:  # the settings' and addresses' own checks
        raise UsageError(str(e)) from None
    backend.set_threads(a.threads)
    if role == "dealer":
        if settings.provider != "dealer":
            raise UsageError(f"rank {a.rank} is the dealer, but --insecure-tfp lets party 0 deal")
        run_dealer(a.world_size, endpoint, settings)
        return 0
    if a.checkpoint is None:
        raise UsageError("--checkpoint is required for the owner and the client")
    job = InferenceJob(checkpoint=a.checkpoint, policy=a.policy, batch_size=a.batch_size, audit=a.audit,
                       verbose=a.verbose, profile=a.profile)
    if role == "owner":
        job.model = load_model(a.checkpoint, a.policy)[0]
    elif role == "client":
        job.images = load_images(a.input, load_meta(a.checkpoint), a.precision)[0]
    result = run_party(lambda ctx: secure_inference(ctx, job), a.rank, a.world_size, endpoint, settings)
    if a.result:
        Path(a.result).write_text(json.dumps(result))
    return 0


def cmd_keys(a: argparse.Namespace) -> int:
    from protocols import backend

    try:
        key, cert = backend.make_keys(a.out, a.rank)
    except FileExistsError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {key} (keep it on this host) and {cert} (copy it to every peer's key directory)")
    return 0


def _print_session(report: Any, json_path: str | None) -> int:
    summary = report.summary()
    regression = "unit" in summary
    table = Table(title=f"secure inference: {summary['model']}, 2 parties, {summary['provider']}")
    for col in ("image", "label", "plaintext", "MPC", f"|diff| ({summary['unit']})" if regression else "max |logit diff|"):
        table.add_column(col, justify="right")

    def shown(value: Any) -> str:  # a class, or a regression value in the target's unit
        return "-" if value is None else f"{value:.3f}" if regression else str(value)

    for row in summary["per_image"]:
        diff = abs(row["mpc"] - row["plaintext"]) if regression else row["max_abs_logit_error"]
        table.add_row(row["name"], shown(row["label"]), shown(row["plaintext"]),
                      f"[{'green' if row['agrees'] else 'red'}]{shown(row['mpc'])}[/]", f"{diff:.2e}")
    console.print(table)
    agree = round(summary["agreement"] * summary["images"])
    console.print(
        f"agreement {agree}/{summary['images']} · {summary['seconds_per_image']:.2f} s/image · "
        f"{summary['bytes_per_image'] / 1e6:.1f} MB/image · {summary['rounds_per_forward']:.0f} rounds per forward "
        f"pass of {summary['batch_size']} (per party, online; offline {summary['offline']['0']['seconds']:.1f} s)"
    )
    if summary["truncation_risk"]:
        console.print(describe(summary["truncation_risk"]))
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["agreement"] == 1.0 else 1


def cmd_demo(a: argparse.Namespace) -> int:
    from ..checkpoint import SHIPPED_EXACT
    from ..session import run_session

    kind = a.data.partition(":")[0]
    checkpoint = a.checkpoint or SHIPPED_EXACT.get(kind)
    if checkpoint is None:
        raise UsageError(f"no shipped checkpoint for --data {a.data} (shipped: {', '.join(SHIPPED_EXACT)}): "
                         "give --checkpoint")
    with console.status(f"running {a.n} {kind} test images through 2 parties ..."):
        report = run_session(checkpoint, [f"{a.data}-test:{a.n}"], batch_size=a.batch_size, precision_bits=a.precision,
                             port=a.port, **security_from_args(a))
    return _print_session(report, a.json)


def cmd_infer(a: argparse.Namespace) -> int:
    from ..session import run_session

    with console.status(f"running {len(a.images)} file(s) through 2 parties ..."):
        report = run_session(a.checkpoint, a.images, batch_size=a.batch_size, precision_bits=a.precision, port=a.port,
                             **security_from_args(a))
    return _print_session(report, a.json)


def cmd_check(a: argparse.Namespace) -> int:
    from ..check import check_recordable, record_precision, run_check

    if a.record_precision:
        check_recordable(a.policy)

    with console.status(f"checking {a.n} images in plaintext and emulation, {a.mpc_n} under MPC ..."):
        report = run_check(a.checkpoint, a.policy, a.n, a.mpc_n, batch_size=a.batch_size, precision_bits=a.precision,
                           split=a.split, **security_from_args(a))
    regression = report.get("task") == "regression"
    metric = f"MAE ({report['unit']})" if regression else "accuracy"
    table = Table(title=f"{metric}, policy {report['policy']}")
    table.add_column("model")
    table.add_column(metric, justify="right")
    table.add_column("images", justify="right")
    for key, images in (("original", report["images"]), ("reference", report["images"]),
                        ("emulation", report["images"]), ("mpc", report["mpc_images"])):
        table.add_row(key, f"{report['mae' if regression else 'accuracy'][key]:.4f}", str(images))
    console.print(table)
    if regression:
        console.print("; ".join(
            f"MPC vs {k}: error mean {report[f'error_mpc_vs_{k}']['mean']:.3g} {report['unit']}, max "
            f"{report[f'error_mpc_vs_{k}']['max']:.3g}, agreement {report[f'agreement_mpc_vs_{k}']:.4f}"
            for k in ("reference", "emulation")))
    else:
        console.print(
            f"MPC vs reference: agreement {report['agreement_mpc_vs_reference']:.4f}, max |logit err| "
            f"{report['max_abs_logit_error_mpc_vs_reference']:.2e}; MPC vs emulation: agreement "
            f"{report['agreement_mpc_vs_emulation']:.4f}, max |logit err| "
            f"{report['max_abs_logit_error_mpc_vs_emulation']:.2e}")
    console.print(describe(report["truncation"]))
    if report["insecure"]:
        console.print(f"[yellow]insecure run: {'; '.join(report['insecure'])}[/]")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    if a.record_precision:
        console.print(f"recorded precision_bits {record_precision(report, a.policy)} in {a.checkpoint}")
    return 0 if report["agreement_mpc_vs_reference"] == 1.0 else 1


def cmd_precision(a: argparse.Namespace) -> int:
    from ..precision import precision_sweep

    try:
        bits = [int(b) for b in a.bits.split(",")]
    except ValueError:
        raise UsageError(f"--bits {a.bits!r}: expected comma-separated integers, e.g. 10,12,14,16") from None
    if any(not 8 <= b <= 20 for b in bits):
        raise UsageError(f"--bits {a.bits}: each count of fractional bits must be in [8, 20]")
    with console.status("sweeping precision ...") as status:
        report = precision_sweep(a.checkpoint, bits, a.n, a.mpc_n, a.batch_size, a.tolerance / 100,
                                 progress=lambda b: status.update(f"{b} fractional bits: {a.n} images emulated, "
                                                                  f"{a.mpc_n} under MPC ..."))
    table = Table(title=f"precision sweep of {a.checkpoint}")
    for column in ("bits", "reference", "emulation", "MPC", "MPC vs reference", "max |logit err|",
                   "local truncation: corrupted / million"):
        table.add_column(column, justify="right")
    for r in report["rows"]:
        acc = r["accuracy"]
        table.add_row(str(r["precision_bits"]), f"{acc['reference']:.4f}", f"{acc['emulation']:.4f}",
                      f"{acc['mpc']:.4f}", f"{r['agreement_mpc_vs_reference']:.4f}",
                      f"{r['max_abs_logit_error_mpc_vs_reference']:.2e}",
                      f"{r['truncation']['local_corrupted_images_per_million']:,.0f}")
    console.print(table)
    fewest = report["fewest_bits"]
    console.print(f"fewest fractional bits within {a.tolerance} points of the float reference: "
                  f"{fewest if fewest is not None else 'none of those measured'}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_protocols(a: argparse.Namespace) -> int:
    from ..protocol_table import SHAPES, protocol_rows, to_markdown

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


def _add_mpc_args(p: argparse.ArgumentParser) -> None:
    add_security_flags(p)
    p.add_argument("--precision", type=int, help="fixed-point fractional bits (default: the checkpoint's "
                   "meta.json precision_bits, else 16; the dealer, which reads no checkpoint, needs the parties' value)")
    p.add_argument("--batch-size", type=int, default=8, help="images per encrypted forward pass")


def _add_session_args(p: argparse.ArgumentParser) -> None:
    _add_mpc_args(p)
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--port", type=int, help="rendezvous port on 127.0.0.1 (default: a free one)")


def add_parsers(sub: argparse._SubParsersAction, default_checkpoint: str) -> None:
    """Add this group's commands (party, keys, demo, infer, check, protocols) to ``sub``."""
    p = sub.add_parser("party", help="run one party of a secure inference session")
    p.add_argument("--rank", type=int, required=True, help="0: model owner, 1: client, W: the dealer")
    p.add_argument("--world-size", type=int, default=2, help="computing parties (the dealer not counted)")
    p.add_argument("--rendezvous", required=True, help="tcp://HOST:PORT where rank 0 listens")
    p.add_argument("--keys", metavar="DIR", help="this party's partyR.key/.crt and every peer's partyS.crt "
                   "(secvit keys); peers without a listed certificate are refused")
    p.add_argument("--listen", metavar="HOST:PORT", help="where this party accepts higher ranks (default: the address "
                   "it reaches rank 0 from, a free port)")
    p.add_argument("--advertise", metavar="HOST:PORT", help="the address higher ranks should use for this party "
                   "(NAT, port forwarding), if not --listen")
    p.add_argument("--insecure-plaintext-channels", action="store_true",
                   help="plain TCP instead of TLS: anyone on the path reads the seeds and shares (tests' control only)")
    p.add_argument("--role", choices=["owner", "client", "dealer"], help="checked against --rank")
    p.add_argument("--checkpoint", help="owner: the checkpoint; client: a directory with its meta.json")
    p.add_argument("--input", nargs="+", default=[], help="client: .npy/.png files or DATA-test:N (e.g. "
                                                                  "digits-test:8, fashion-mnist-test:8)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this party")
    p.add_argument("--timeout", type=float, default=60.0, help="longest wait for a peer, seconds")
    p.add_argument("--result", metavar="PATH", help="write this party's report as JSON")
    p.add_argument("--policy", help="rewrite the checkpoint's model by this policy (public, same on all parties)")
    p.add_argument("--verbose", action="store_true", help="print a line per stage")
    p.add_argument("--profile", action="store_true", help="record per-node time, bytes and rounds in the report")
    p.add_argument("--audit", action="store_true", help=argparse.SUPPRESS)
    _add_mpc_args(p)
    p.set_defaults(func=cmd_party)

    p = sub.add_parser("keys", help="make a party's TLS key and certificate (give the .crt to its peers)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write partyR.key and partyR.crt")
    p.add_argument("--rank", type=int, required=True, help="the rank the certificate speaks for (0 owner, 1 client, "
                   "W dealer)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("demo", help="secure inference of test images (digits by default), checked against plaintext")
    p.add_argument("--data", default="digits", help="whose test images: digits (default), fashion-mnist[:DIR], "
                                                    "mnist:DIR, ... (as secvit train)")
    p.add_argument("--checkpoint", help="default: the shipped exact checkpoint of --data (digits, fashion-mnist)")
    p.add_argument("--n", type=int, default=8, help="number of test images")
    _add_session_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("infer", help="secure inference of your images (.png or .npy)")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", default=default_checkpoint)
    _add_session_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("check", help="accuracy: original vs rewritten vs fixed-point emulation vs real MPC")
    p.add_argument("--checkpoint", default=default_checkpoint)
    p.add_argument("--policy", help="rewrite by this policy (default: the checkpoint as it is)")
    p.add_argument("--n", type=int, default=200, help="test images for the plaintext and emulated accuracies")
    p.add_argument("--mpc-n", type=int, default=16, help="of those, images run under real MPC")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="images: test (default), train, all, or augmented (all, then translated copies)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--record-precision", action="store_true", help="when MPC agrees with the reference on every "
                   "image, record --precision in the checkpoint's meta.json as its sessions' default")
    _add_mpc_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("precision", help="accuracy and MPC agreement against the fixed-point fractional bits")
    p.add_argument("--checkpoint", default=default_checkpoint)
    p.add_argument("--bits", default="10,12,14,16", help="fractional bits to measure (default 10,12,14,16)")
    p.add_argument("--n", type=int, default=200, help="test images emulated at each precision")
    p.add_argument("--mpc-n", type=int, default=16, help="of those, images run under real MPC at each precision")
    p.add_argument("--batch-size", type=int, default=8, help="images per encrypted forward pass")
    p.add_argument("--tolerance", type=float, default=0.5, help="accuracy points the emulation may lose (0.5)")
    p.add_argument("--json", metavar="PATH", help="write the sweep as JSON")
    p.set_defaults(func=cmd_precision)

    p = sub.add_parser("protocols", help="the MPC protocol registry: formula, rounds, bytes, accuracy")
    p.add_argument("--format", choices=["table", "md"], default="table")
    p.set_defaults(func=cmd_protocols)
