"""``secvit`` command line: train, cache-logits, party, keys, demo, infer, check, rewrite, inherit, compress,
search, pipeline, protocols, models, profile, compare, pareto."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from .check import SPLITS
from .commands import console
from .commands.plaintext import (cmd_cache_logits, cmd_compress, cmd_inherit, cmd_models, cmd_pipeline, cmd_rewrite,
                                 cmd_search, cmd_train)
from .commands.sessions import cmd_check, cmd_demo, cmd_infer, cmd_keys, cmd_party, cmd_protocols
from .profile.commands import (add_compare_parser, add_pareto_parser, add_profile_parser, cmd_compare, cmd_pareto,
                               cmd_profile)
from .runtime.security import add_security_flags

__all__ = ["DEFAULT_CHECKPOINT", "main", "main_exit"]

DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parents[1] / "checkpoints" / "vit_lite_7_4_32-digits")
EXIT_BAD_INPUT = 2


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
    p.add_argument("--input", nargs="+", default=[], help="client: .npy/.png files or digits-test:N")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this party")
    p.add_argument("--timeout", type=float, default=60.0, help="longest wait for a peer, seconds")
    p.add_argument("--result", metavar="PATH", help="write this party's report as JSON")
    p.add_argument("--policy", help="rewrite the checkpoint's model by this policy (public, same on all parties)")
    p.add_argument("--verbose", action="store_true", help="print a line per stage")
    p.add_argument("--profile", action="store_true", help="record per-node time, bytes and rounds in the report")
    p.add_argument("--audit", action="store_true", help=argparse.SUPPRESS)
    _add_mpc_args(p)

    p = sub.add_parser("keys", help="make a party's TLS key and certificate (give the .crt to its peers)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write partyR.key and partyR.crt")
    p.add_argument("--rank", type=int, required=True, help="the rank the certificate speaks for (0 owner, 1 client, "
                   "W dealer)")

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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "cache-logits": cmd_cache_logits, "party": cmd_party, "keys": cmd_keys, "demo": cmd_demo, "infer": cmd_infer,
    "models": cmd_models, "protocols": cmd_protocols, "rewrite": cmd_rewrite, "check": cmd_check, "inherit": cmd_inherit,
    "compress": cmd_compress, "search": cmd_search, "pipeline": cmd_pipeline,
    "profile": lambda a: cmd_profile(a, console), "compare": lambda a: cmd_compare(a, console),
    "pareto": lambda a: cmd_pareto(a, console),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input, before any secret is shared)."""
    from protocols.mpc_runtime.channels import ChannelError

    from .checkpoint import CheckpointError
    from .inputs import InputError
    from .runtime.launcher import PartyFailure
    from .rewrite.policy import PolicyError
    from .runtime.party import RendezvousError

    a = build_parser().parse_args(argv)
    try:
        return COMMANDS[a.command](a)
    except (InputError, CheckpointError, RendezvousError, PolicyError, ValueError, KeyError, FileExistsError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"secvit: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PartyFailure as e:
        print(f"secvit: a party failed: {e}", file=sys.stderr)
        return 1
    except ChannelError as e:  # a malformed, oversized or missing frame: the session cannot go on
        print(f"secvit: error: {e}", file=sys.stderr)
        return 1


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
