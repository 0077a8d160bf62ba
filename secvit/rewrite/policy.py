"""Rewrite policies: which protocol replaces each attention, activation and norm.

A policy is YAML, resolved once into a :class:`Policy`::

    attention:                  # softmax-kind protocols
      default: softmax.scaling
      layers: {0: softmax.relu}                   # a layer index: every head
      heads: {1: [softmax.relu, softmax.scaling]} # a layer index: one protocol per head
      paths: {"blocks.6.*": softmax.exact}        # module-path patterns (fnmatch)
    activation: {default: gelu.quad}              # activation-kind protocols
    norm: {default: norm.layer, fold_affine: true}  # norm-kind; fold the affine into the next Linear

Precedence: paths, then heads, then layers, then default. Layer indices count the
model's transformer blocks in order. Unknown keys, unknown protocols, protocols of the
wrong kind and out-of-range layer or head indices are errors that name the file, the key
and what is allowed (:meth:`Policy.check` against a model).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configs import CONFIG_DIR, read_config

import protocols
from ..errors import SecvitError

__all__ = ["POLICY_DIR", "PolicyError", "Policy", "Section", "load_policy"]

POLICY_DIR = CONFIG_DIR / "policies"
_SECTIONS = {"attention": "softmax", "activation": "activation", "norm": "norm"}
_DEFAULTS = {"attention": "softmax.exact", "activation": "gelu.exact", "norm": "norm.layer"}


class PolicyError(SecvitError, ValueError):
    """A policy file or dict is malformed."""


@dataclass
class Section:
    """Protocol choice for one kind of module."""

    default: str
    layers: dict[int, str] = field(default_factory=dict)
    heads: dict[int, list[str]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def choose(self, path: str, layer: int | None, num_heads: int = 1) -> list[str]:
        """One protocol per head (a single entry for non-attention modules)."""
        for pattern, name in self.paths.items():
            if fnmatch.fnmatchcase(path, pattern):
                return [name] * num_heads
        if layer is not None and layer in self.heads:
            return list(self.heads[layer])
        if layer is not None and layer in self.layers:
            return [self.layers[layer]] * num_heads
        return [self.default] * num_heads


@dataclass
class Policy:
    """A resolved rewrite policy."""

    name: str
    attention: Section
    activation: Section
    norm: Section
    fold_affine: bool = False
    source: str = "<dict>"

    def check(self, heads: list[int]) -> None:
        """Reject layer and head indices the model does not have (``heads``: the head
        count of each layer, which varies by stage in TinyViT).

        Raises:
            PolicyError: naming the file, the key and the allowed range.
        """
        for section_name in _SECTIONS:
            section: Section = getattr(self, section_name)
            layers = len(heads)
            for key, indices in (("layers", section.layers), ("heads", section.heads)):
                for layer in indices:
                    if not 0 <= layer < layers:
                        raise PolicyError(f"{self.source}: {section_name}.{key}: layer {layer} out of range; "
                                          f"the model has layers 0..{layers - 1}")
            for layer, names in section.heads.items():
                if len(names) != heads[layer]:
                    raise PolicyError(f"{self.source}: {section_name}.heads.{layer}: {len(names)} protocols for "
                                      f"{heads[layer]} heads; give exactly {heads[layer]}")

    def to_dict(self) -> dict[str, Any]:
        def section(s: Section) -> dict[str, Any]:
            d: dict[str, Any] = {"default": s.default}
            d.update({k: v for k, v in (("layers", s.layers), ("heads", s.heads), ("paths", s.paths)) if v})
            return d

        return {"name": self.name, "attention": section(self.attention), "activation": section(self.activation),
                "norm": {**section(self.norm), "fold_affine": self.fold_affine}}


def _protocol(source: str, key: str, value: Any, kind: str) -> str:
    allowed = protocols.names(kind)
    if value not in allowed:
        raise PolicyError(f"{source}: {key}: {value!r} is not a {kind} protocol; allowed: {', '.join(allowed)}")
    return value


def _section(source: str, name: str, raw: Any) -> tuple[Section, bool]:
    kind = _SECTIONS[name]
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: {name}: expected a mapping")
    allowed_keys = {"default", "layers", "paths"} | ({"heads"} if name == "attention" else set()) | (
        {"fold_affine"} if name == "norm" else set())
    unknown = set(raw) - allowed_keys
    if unknown:
        raise PolicyError(f"{source}: {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed_keys)}")

    def indexed(key: str) -> dict[int, Any]:
        value = raw.get(key) or {}
        # JSON (meta.json) turns integer keys into strings
        if not isinstance(value, dict) or not all(isinstance(k, int) or str(k).isdigit() for k in value):
            raise PolicyError(f"{source}: {name}.{key}: expected a mapping from layer index to protocol")
        return {int(k): v for k, v in value.items()}

    section = Section(
        default=_protocol(source, f"{name}.default", raw.get("default", _DEFAULTS[name]), kind),
        layers={i: _protocol(source, f"{name}.layers.{i}", p, kind) for i, p in indexed("layers").items()},
        heads={i: [_protocol(source, f"{name}.heads.{i}", p, kind) for p in ps] for i, ps in indexed("heads").items()},
        paths={str(k): _protocol(source, f"{name}.paths.{k}", p, kind) for k, p in (raw.get("paths") or {}).items()},
    )
    fold = raw.get("fold_affine", False)
    if not isinstance(fold, bool):
        raise PolicyError(f"{source}: norm.fold_affine: expected true or false")
    return section, fold


def policy_from_dict(raw: dict[str, Any], source: str = "<dict>", name: str | None = None) -> Policy:
    """Validate and resolve a policy mapping."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: expected a mapping with keys {sorted(_SECTIONS)}")
    unknown = set(raw) - set(_SECTIONS) - {"name", "description"}
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SECTIONS) + ['description', 'name']}")
    sections = {k: _section(source, k, raw.get(k)) for k in _SECTIONS}
    return Policy(name=raw.get("name", name or source), attention=sections["attention"][0],
                  activation=sections["activation"][0], norm=sections["norm"][0],
                  fold_affine=sections["norm"][1], source=source)


def load_policy(spec: str | Path) -> Policy:
    """A policy by name (``configs/policies/NAME.yaml``) or by path.

    Raises:
        PolicyError: unknown name, unreadable YAML or an invalid policy.
    """
    path, raw = read_config(spec, "policies", "policy", PolicyError)
    return policy_from_dict(raw, source=str(path), name=path.stem)
