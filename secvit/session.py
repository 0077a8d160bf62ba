"""A local secure-inference session with a plaintext cross-check (``demo`` and ``infer``).

The harness loads and validates the images before any party starts, runs the parties
(:func:`~secvit.runtime.launcher.run_local`), and compares the MPC logits with the
plaintext model's. It holds both the weights and the images: it is a verification tool
for one machine, not a party.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from protocols.fixed_point import FixedPoint

from .checkpoint import load_meta, load_model
from .inputs import load_images
from .runtime.launcher import run_local
from .runtime.netem import NetemLink
from .runtime.roles import CLIENT
from .runtime.security import party_flags as security_flags
from .secure.emulation import emulate
from .task import RegressionTarget
from .truncation_risk import truncation_risk

__all__ = ["SessionReport", "run_session"]


@dataclass
class SessionReport:
    """Per-image comparison and per-image costs of one session."""

    names: list[str]
    labels: list[int] | None
    plaintext: torch.Tensor
    mpc: torch.Tensor
    parties: dict[int, dict[str, Any]]
    provider: str
    model: str
    truncation: str = "exact"
    batch_size: int = 8
    risk: dict[str, Any] | None = None
    target: RegressionTarget | None = None  # a regression checkpoint's: outputs are its standardised values

    def _outputs(self, values: torch.Tensor) -> torch.Tensor:
        """Per image: the class (argmax), or the regression value in the target's unit."""
        return values.argmax(-1) if self.target is None else self.target.decode(values)

    @property
    def agrees(self) -> torch.Tensor:
        """Per image: MPC gives the reference's class, or a value within
        :data:`~secvit.task.REGRESSION_AGREEMENT` of the target's std of the reference's."""
        if self.target is None:
            return self._outputs(self.plaintext) == self._outputs(self.mpc)
        return self.target.agrees(self._outputs(self.plaintext), self._outputs(self.mpc))

    @property
    def forward_passes(self) -> int:
        return -(-self.images // self.batch_size)

    @property
    def rounds_per_forward(self) -> float:
        """Rounds are latency: a batch costs the rounds of one image (the largest party's)."""
        return max(p["rounds"] for p in self.parties.values()) / self.forward_passes

    @property
    def images(self) -> int:
        return len(self.names)

    @property
    def agreement(self) -> float:
        return float(self.agrees.float().mean())

    @property
    def abs_errors(self) -> torch.Tensor:
        return (self.plaintext - self.mpc).abs().amax(-1)

    def per_party(self, key: str, field: str | None = None) -> float:
        """The largest per-party figure per image: ``report[key]`` (bytes, rounds,
        seconds), or ``report[key][field]``."""
        return max(p[key] if field is None else p[key][field] for p in self.parties.values()) / self.images

    def summary(self) -> dict[str, Any]:
        """The JSON report: headline figures first, then per-image rows and per-party totals."""
        return {
            "images": self.images,
            "agreement": self.agreement,
            "max_abs_logit_error": float(self.abs_errors.max()),
            "seconds_per_image": self.per_party("seconds"),
            "bytes_per_image": self.per_party("bytes"),
            "rounds_per_forward": self.rounds_per_forward,
            "batch_size": self.batch_size,
            "model": self.model,
            "provider": self.provider,
            "truncation": self.truncation,
            "insecure": self.parties[CLIENT]["insecure"],
            "offline": {str(r): p["offline"] for r, p in self.parties.items()},
            "weight_masks": {str(r): p["weight_masks"] for r, p in self.parties.items()},
            "truncated_elements_per_image": self.per_party("truncations", "elements"),
            "truncation_risk": self.risk,
            "random_bytes_per_image": self.per_party("random_bytes"),
            "parties": {str(r): {k: p[k] for k in ("seconds", "bytes", "rounds")} for r, p in self.parties.items()},
            "per_image": [
                {"name": n, "label": None if self.labels is None else self.labels[i],
                 "plaintext": plain.item(), "mpc": mpc.item(), "agrees": bool(ok),
                 "max_abs_logit_error": float(self.abs_errors[i])}
                for i, (n, plain, mpc, ok) in enumerate(zip(self.names, self._outputs(self.plaintext),
                                                            self._outputs(self.mpc), self.agrees))
            ],
            **({"task": "regression", "unit": self.target.unit} if self.target is not None else {}),
        }


def run_session(
    checkpoint: str,
    inputs: list[str],
    provider: str = "dealer",
    batch_size: int = 8,
    precision_bits: int | None = None,
    threads: int = 1,
    port: int | None = None,
    policy: str | None = None,
    party_flags: list[str] | None = None,
    link: NetemLink | None = None,
    truncation: str = "exact",
    risk: bool = True,
) -> SessionReport:
    """Validate inputs, run owner and client (and dealer) processes, compare with plaintext.

    ``precision_bits`` None takes the checkpoint's (:attr:`~secvit.checkpoint.Meta.precision_bits`).
    ``provider`` is ``dealer`` (a dealer process) or ``TFP`` (insecure: party 0 deals);
    ``truncation`` ``exact`` or ``local`` (insecure). ``policy`` rewrites the checkpoint's model first (all parties and the plaintext side);
    ``party_flags`` go to every party (e.g. ``--profile``); ``link`` runs them in network
    namespaces (:func:`~secvit.runtime.netem.netem_link`). ``risk`` emulates the plan on the
    same images first, to report what its truncations are expected to corrupt
    (:func:`~secvit.truncation_risk.truncation_risk`).

    Raises:
        InputError, CheckpointError: before any party starts.
        PartyFailure: a party failed.
    """
    meta = load_meta(checkpoint)
    precision_bits = meta.session_precision(precision_bits)
    images, labels, names = load_images(inputs, meta, precision_bits)
    model, _ = load_model(checkpoint, policy)
    with torch.no_grad():
        plaintext = model(images)
    expected = _risk(model, images, precision_bits, truncation) if risk else None
    args = ["--checkpoint", checkpoint, "--batch-size", str(batch_size), "--precision", str(precision_bits),
            "--threads", str(threads), *(["--policy", policy] if policy else []), *security_flags(provider, truncation),
            *(party_flags or [])]
    parties = run_local(args, provider=provider, port=port, extra_args={CLIENT: ["--input", *inputs]}, link=link)
    mpc = torch.tensor(parties[CLIENT]["logits"])
    target = RegressionTarget.from_dict(meta.extra["target"]) if "target" in meta.extra else None
    return SessionReport(names, labels, plaintext, mpc, parties, provider, meta.model, truncation, batch_size, expected,
                         target)


def _risk(model: torch.nn.Module, images: torch.Tensor, precision_bits: int, truncation: str) -> dict[str, Any]:
    fp = FixedPoint(precision_bits)
    emulate(model, images, fp=fp)
    return truncation_risk(fp.stats, len(images), truncation)
