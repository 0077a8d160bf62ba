"""Checkpoints: a directory with ``model.safetensors`` (weights) and ``meta.json``.

``meta.json`` is public (architecture, normalisation, provenance): the client party reads
only it. The weights file is read by the model owner alone.
"""

from __future__ import annotations

import inspect
import json
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from protocols.truncation import MAX_PRECISION, MIN_PRECISION

from .data import Normalization
from .models import create_model, is_known
from .models.registry import ModelFn, builtin_entry
from .errors import SecvitError

__all__ = ["DEFAULT_CHECKPOINT", "SHIPPED_EXACT", "MODEL_ARG_RULES", "TIMM_MODEL_ARGS", "VIT_LITE_ARGS", "ArgRule", "CheckpointError",
           "Meta", "allowed_model_args", "apply_policy", "build_model", "check_model", "check_model_args", "load_meta",
           "load_model", "save_checkpoint"]

WEIGHTS = "model.safetensors"
META = "meta.json"


_SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT_CHECKPOINT = str(_SHIPPED / "vit_lite_7_4_32-digits")
"""The shipped ViT-Lite trained on digits: the commands' default checkpoint."""
DEFAULT_PRECISION = 16  # fixed-point fractional bits of a session whose checkpoint records none
SHIPPED_EXACT = {"digits": DEFAULT_CHECKPOINT, "fashion-mnist": str(_SHIPPED / "vit_lite_6_4_28-fashion")}
"""The shipped exact checkpoint of each dataset kind (``secvit demo --data``)."""


class CheckpointError(SecvitError, ValueError):
    """A checkpoint is missing, incomplete or does not match its architecture."""


@dataclass(frozen=True)
class ArgRule:
    """What one ``model_args`` value may be: a JSON scalar of ``kind`` within the
    inclusive bounds ``[low, high]`` (numbers), one of ``choices`` (strings), or null
    where the constructor's default is None (``nullable``). A bool is never a number."""

    kind: type
    low: float = 0
    high: float = 0
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (as parsed from JSON) satisfies the rule."""
        if value is None:
            return self.nullable
        if self.kind is str:
            return isinstance(value, str) and value in self.choices
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        number = (int, float) if self.kind is float else int
        return isinstance(value, number) and self.low <= value <= self.high

    def describe(self) -> str:
        """The rule in words, for error messages."""
        if self.kind is str:
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind is bool:
            text = "a bool"
        else:
            text = f"{'an int' if self.kind is int else 'a number'} in [{self.low}, {self.high}]"
        return text + (" or null" if self.nullable else "")


_SIZE = ArgRule(int, 1, 4096)
_RATE = ArgRule(float, 0.0, 1.0)

MODEL_ARG_RULES: dict[str, ArgRule] = {
    "img_size": _SIZE,
    "patch_size": _SIZE,
    "in_chans": _SIZE,
    "num_classes": ArgRule(int, 1, 32768),  # ImageNet-21k heads (21843) fit
    "embed_dim": _SIZE,
    "head_dim": ArgRule(int, 1, 4096, nullable=True),
    "depth": ArgRule(int, 1, 64),
    "num_heads": ArgRule(int, 1, 64),
    "mlp_ratio": ArgRule(float, 0.0, 16.0),
    "qkv_bias": ArgRule(bool),
    "class_token": ArgRule(bool),
    "global_pool": ArgRule(str, choices=("", "token", "avg", "max", "avgmax", "map")),
    "drop_rate": _RATE,
    "drop_path_rate": _RATE,
    "glca": ArgRule(bool),
    "class_attention": ArgRule(bool),
}
"""The allowlist of constructor arguments a ``meta.json`` may set, with their bounds.

``meta.json`` is public and comes from a peer (the client party reads the model owner's, as
does any party of a secure session), and its ``model_args`` go straight
into a model constructor: without this table a hostile or broken file could pass
objects, callables by name (``act_layer``, ``block_fn``) or huge sizes to timm.
Only architecture arguments with JSON-scalar values are listed.
"""

VIT_LITE_ARGS = frozenset({"depth", "num_heads", "embed_dim", "img_size", "patch_size", "mlp_ratio",
                           "num_classes", "in_chans", "head_dim", "glca", "class_attention"})
"""The named parameters of :func:`~secvit.models.vit_lite.vit_lite`, to which every built-in
entry forwards its ``**kwargs``; what the project writes (``num_classes`` from training,
``depth`` / ``mlp_ratio`` / ``num_heads`` / ``head_dim`` from compression, ``glca`` and
``class_attention`` from training) is among them."""

TIMM_MODEL_ARGS = frozenset(MODEL_ARG_RULES) - {"head_dim", "glca", "class_attention"}
"""Arguments allowed for the timm models (``vit_*``, ``deit_*``, ``deit3_*``, ``tiny_vit_*``,
``beit_*``, ``swin_*``): the scalar ones; Swin's per-stage tuples keep the named model's."""


def _entry_args(entry: ModelFn) -> frozenset[str]:
    """A built-in entry's keyword parameters that have a rule, plus :data:`VIT_LITE_ARGS`
    when it forwards ``**kwargs``."""
    params = inspect.signature(entry).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    forwarded = VIT_LITE_ARGS if any(p.kind is p.VAR_KEYWORD for p in params) else frozenset()
    return frozenset(named & MODEL_ARG_RULES.keys()) | forwarded


def allowed_model_args(model: str) -> frozenset[str]:
    """The ``model_args`` keys a ``meta.json`` may set for the known model ``model``."""
    entry = builtin_entry(model)
    return TIMM_MODEL_ARGS if entry is None else _entry_args(entry)


def _check_value(key: str, value: Any, where: str) -> Any:
    """``value`` when :data:`MODEL_ARG_RULES` accepts it for ``key``.

    Raises:
        CheckpointError: naming ``where`` (file and field) and what is allowed.
    """
    rule = MODEL_ARG_RULES[key]
    if not rule.accepts(value):
        raise CheckpointError(f"{where} must be {rule.describe()}, got {reprlib.repr(value)}")
    return value


def check_model(model: Any, source: str) -> str:
    """``model`` when it names a built-in or supported timm architecture."""
    if not isinstance(model, str) or not is_known(model):
        raise CheckpointError(f"{source}: unknown model {reprlib.repr(model)}")
    return model


def check_model_args(model: str, args: Any, source: str) -> dict[str, Any]:
    """``args`` when every key is allowed for ``model`` and every value obeys its rule.

    Raises:
        CheckpointError: not an object, a key not allowed, or a value out of its rule.
    """
    if not isinstance(args, dict):
        raise CheckpointError(f"{source}: model_args must be an object, got {type(args).__name__}")
    allowed = allowed_model_args(model)
    for key, value in args.items():
        if key not in allowed:
            raise CheckpointError(f"{source}: model_args key {reprlib.repr(key)} is not allowed for {model} "
                                  f"(allowed: {', '.join(sorted(allowed))})")
        _check_value(key, value, f"{source}: model_args[{key!r}]")
    return dict(args)


@dataclass
class Meta:
    """Public description of a checkpoint."""

    model: str
    model_args: dict[str, Any]
    img_size: int
    in_chans: int
    num_classes: int
    normalization: Normalization
    data: str = "digits"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        """Transformer blocks of the architecture (built once, without weights)."""
        from .rewrite.graph import block_layers

        return len(block_layers(create_model(self.model, **self.model_args)))

    @property
    def precision_bits(self) -> int:
        """The fixed-point fractional bits a session of this checkpoint uses unless told
        otherwise: the ``precision_bits`` its ``meta.json`` records (written by ``secvit check
        --record-precision`` once MPC agreed with the reference on every image), else 16."""
        return int(self.extra.get("precision_bits", DEFAULT_PRECISION))

    def session_precision(self, requested: int | None) -> int:
        """``requested`` fractional bits, or this checkpoint's :attr:`precision_bits` when None."""
        return self.precision_bits if requested is None else requested

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("normalization", "extra")}
        return {**d, "normalization": self.normalization.to_dict(), **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "meta.json") -> "Meta":
        """Parse a ``meta.json`` object; the model must be known and its arguments allowed
        (:data:`MODEL_ARG_RULES`) before anything is built.

        Raises:
            CheckpointError: not an object, a key missing, an unknown model, or a refused value.
        """
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(d).__name__}")
        required = ("model", "model_args", "img_size", "in_chans", "num_classes", "normalization")
        missing = [k for k in required if k not in d]
        if missing:
            raise CheckpointError(f"{source}: missing keys {missing}")
        known = set(required) | {"data"}
        model = check_model(d["model"], source)
        bits = d.get("precision_bits", DEFAULT_PRECISION)
        if type(bits) is not int or not MIN_PRECISION <= bits <= MAX_PRECISION["exact"]:
            raise CheckpointError(f"{source}: precision_bits must be an integer in [{MIN_PRECISION}, "
                                  f"{MAX_PRECISION['exact']}], got {reprlib.repr(bits)}")
        return cls(
            model=model,
            model_args=check_model_args(model, d["model_args"], source),
            img_size=_check_value("img_size", d["img_size"], f"{source}: img_size"),
            in_chans=_check_value("in_chans", d["in_chans"], f"{source}: in_chans"),
            num_classes=_check_value("num_classes", d["num_classes"], f"{source}: num_classes"),
            normalization=Normalization.from_dict(d["normalization"]),
            data=d.get("data", "digits"),
            extra={k: v for k, v in d.items() if k not in known},
        )


def load_meta(ckpt: str | Path) -> Meta:
    """Read a checkpoint's public ``meta.json`` (checked by :meth:`Meta.from_dict`).

    Raises:
        CheckpointError: the directory or its ``meta.json`` is missing, unreadable or refused.
    """
    path = Path(ckpt) / META
    if not Path(ckpt).is_dir():
        raise CheckpointError(f"checkpoint {ckpt}: not a directory (expected {META} and {WEIGHTS} inside)")
    try:
        meta = Meta.from_dict(json.loads(path.read_text()), source=str(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt}: {META} not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    return meta


def build_model(meta: Meta, policy: str | None = None) -> nn.Module:
    """The checkpoint's architecture with freshly initialised (not loaded) weights: the one
    way every caller rebuilds a model. It is rewritten by its policy when ``meta.json``
    records one (an MPC-friendly model), its attention grouped (``gqa``: K/V heads per
    layer, or the mode and trained assignment, :func:`secvit.gqa.gqa_record`) when it records that, and then rewritten by ``policy`` (a name or YAML path),
    if given. Under ``torch.device("meta")`` it builds the client's skeleton (shapes, no
    values).

    Raises:
        PolicyError: ``policy`` is unknown, or the checkpoint is already rewritten.
    """
    from .rewrite import rewrite
    from .rewrite.policy import policy_from_dict

    model = create_model(meta.model, **meta.model_args).eval()
    if meta.extra.get("policy"):
        model = rewrite(model, policy_from_dict(meta.extra["policy"], source="meta.json"))[0]
    if meta.extra.get("gqa"):
        from .gqa import gqa_from_record

        model = gqa_from_record(model, meta.extra["gqa"])
    return apply_policy(model.eval(), policy)


def apply_policy(model: nn.Module, policy: str | None) -> nn.Module:
    """``model`` rewritten by ``policy`` (a name or YAML path; None: ``model`` itself), the
    last step of :func:`build_model` and :func:`load_model`."""
    if policy is None:
        return model
    from .rewrite import load_policy, rewrite

    return rewrite(model, load_policy(policy))[0].eval()


def load_model(ckpt: str | Path, policy: str | None = None) -> tuple[nn.Module, Meta]:
    """Build the architecture (:func:`build_model`, ``policy`` included) and load the
    weights (float32, eval mode).

    Raises:
        CheckpointError: weights missing, corrupt, or not matching the architecture.
        PolicyError: see :func:`build_model`.
    """
    meta = load_meta(ckpt)
    model = build_model(meta)  # the checkpoint's own architecture: its weights fit it
    path = Path(ckpt) / WEIGHTS
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt}: {WEIGHTS} not found") from None
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: corrupt or unreadable weights ({e})") from None
    state = {k: v.float() for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match {meta.model}: {e}") from None
    return apply_policy(model.eval(), policy), meta


def save_checkpoint(model: nn.Module, meta: Meta, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the parameters (``dtype``, float16 by default to keep shipped files small), the
    buffers (e.g. ``norm.batch``'s running statistics) in float32, and meta.

    Buffers stay float32 because they are few and need the range: a running variance of
    the residual stream reached 7e4 in a BatchNorm ViT-Lite, past float16's 65,504, and
    saved as inf it took the model from 94.7% to 53.9% test accuracy.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buffers = {name for name, _ in model.named_buffers()}
    state = {k: v.detach().to(torch.float32 if k in buffers else dtype).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    (out / META).write_text(json.dumps({**meta.to_dict(), "weights_dtype": str(dtype).removeprefix("torch.")}, indent=2) + "\n")
    return out
