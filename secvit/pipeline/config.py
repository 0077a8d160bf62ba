"""Experiment configs of ``secvit pipeline`` (YAML), checked before anything runs.

::

    name: mpcformer-digits            # the output directory defaults to runs/<name>
    description: free text
    teacher:                          # exactly one of:
      checkpoint: checkpoints/vit_lite_7_4_32-digits
      # train: {model: vit_lite_7_4_32, epochs: 40}      (any secvit train option)
    compress:                         # optional, on the plain teacher, before rewriting
      depth: 4                        # structural reparameterization (secvit compress) ...
      epochs: 20
      # method: inherit, depth: 4, mlp_ratio: 1, heads: 2  ... or weight inheritance
      # method: progressive, depths: [5, 3], epochs: 10, distill: affinity  ... or TinyCLIP's
      #   stages: at each depth inherit from the previous stage, then distil from the teacher
    students:                         # one or more; each starts from the (compressed) teacher
      - name: mpcformer
        policy: mpcformer             # or search: {fraction: 0.3, epochs: 5}
        epochs: 40                    # any secvit train option: lr, distill, temperature, gqa, ...
        distill: kd                   # kd | nkd | mpcformer (teacher: the pipeline's) | uskd | sparse
    check: {n: 360, mpc_n: 16, batch_size: 8}   # optional (these defaults)
    profile: {n: 1, network: wan}     # optional (these defaults)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..train import TEACHER_METHODS, TrainConfig
from ..errors import SecvitError

__all__ = ["ExperimentConfig", "PipelineConfigError", "StudentSpec", "load_experiment"]

SET_BY_PIPELINE = ("model", "data", "init", "policy", "teacher", "cached_logits")
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in SET_BY_PIPELINE)
SEARCH_KEYS = ("fraction", "max_mb", "max_rounds", "base_policy", "lam", "epochs", "lr", "alpha_lr", "seed")
COMPRESS_KEYS = {"depth": ("depth", "epochs", "lr", "ramp", "distill", "temperature", "seed"),
                 "inherit": ("depth", "mlp_ratio", "heads"),
                 "progressive": ("depths", "epochs", "lr", "distill", "temperature", "seed", "batch_size",
                                 "warmup_epochs", "shift", "flip")}


class PipelineConfigError(SecvitError, ValueError):
    """An experiment config that cannot run (names the file and the key)."""


def _only(section: dict, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(section, dict):
        raise PipelineConfigError(f"{where}: expected a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise PipelineConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    return dict(section)


@dataclass
class StudentSpec:
    """One MPC-friendly student: its policy (named, or searched) and training options."""

    name: str
    policy: str | None = None
    search: dict[str, Any] | None = None
    top_k: int = 5
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """A checked experiment (see the module docstring for the YAML)."""

    name: str
    source: str
    description: str = ""
    teacher: dict[str, Any] = field(default_factory=dict)
    compress: dict[str, Any] | None = None
    students: list[StudentSpec] = field(default_factory=list)
    check: dict[str, int] = field(default_factory=lambda: {"n": 360, "mpc_n": 16, "batch_size": 8})
    profile: dict[str, Any] = field(default_factory=lambda: {"n": 1, "network": "wan"})


def _teacher(section: Any, where: str) -> dict[str, Any]:
    t = _only(section, ("checkpoint", "train"), where)
    if len(t) != 1:
        raise PipelineConfigError(f"{where}: give exactly one of checkpoint or train")
    if "train" in t:
        t["train"] = _only(t["train"], TRAIN_KEYS + ("model", "data"), f"{where}.train")
    return t


def _compress(section: Any, where: str) -> dict[str, Any]:
    c = dict(section) if isinstance(section, dict) else section
    method = c.pop("method", "depth") if isinstance(c, dict) else None
    if method not in COMPRESS_KEYS:
        raise PipelineConfigError(f"{where}.method: expected one of {', '.join(COMPRESS_KEYS)}, got {method!r}")
    c = _only(c, COMPRESS_KEYS[method], where)
    if method == "depth" and "depth" not in c:
        raise PipelineConfigError(f"{where}: depth is required")
    if method == "progressive":
        depths = c.get("depths")
        if (not isinstance(depths, list) or not depths or not all(isinstance(d, int) and d > 0 for d in depths)
                or depths != sorted(set(depths), reverse=True)):
            raise PipelineConfigError(f"{where}.depths: expected decreasing block counts, e.g. [5, 3] (got {depths!r})")
        if c.get("distill", "kd") not in TEACHER_METHODS:
            raise PipelineConfigError(f"{where}.distill: each stage distils from the teacher: one of "
                                      f"{', '.join(TEACHER_METHODS)}")
    return {"method": method, **c}


def _student(section: Any, where: str) -> StudentSpec:
    s = _only(section, ("name", "policy", "search", "top_k") + TRAIN_KEYS, where)
    if "name" not in s:
        raise PipelineConfigError(f"{where}: name is required")
    if ("policy" in s) == ("search" in s):
        raise PipelineConfigError(f"{where}: give exactly one of policy or search")
    search = _only(s.pop("search"), SEARCH_KEYS, f"{where}.search") if "search" in s else None
    spec = StudentSpec(name=str(s.pop("name")), policy=s.pop("policy", None), search=search,
                       top_k=int(s.pop("top_k", 5)), train=s)
    distill = s.get("distill")
    try:  # the teacher and the logit cache are the pipeline's: check everything else
        TrainConfig(**s, teacher="(pipeline)" if distill in TEACHER_METHODS else None,
                    cached_logits="(pipeline)" if distill == "sparse" else None)
    except (TypeError, ValueError) as e:
        raise PipelineConfigError(f"{where}: {e}") from None
    return spec


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and check an experiment YAML.

    Raises:
        PipelineConfigError: missing file, bad YAML, unknown or missing keys.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: no such experiment config") from None
    except yaml.YAMLError as e:
        raise PipelineConfigError(f"{path}: not valid YAML ({e})") from None
    top = _only(raw or {}, ("name", "description", "teacher", "compress", "students", "check", "profile"), str(path))
    if "name" not in top or "teacher" not in top or not top.get("students"):
        raise PipelineConfigError(f"{path}: name, teacher and at least one student are required")
    names = [s.get("name") for s in top["students"] if isinstance(s, dict)]
    if len(set(names)) != len(names):
        raise PipelineConfigError(f"{path}: student names must differ (got {names})")
    cfg = ExperimentConfig(name=str(top["name"]), source=str(path), description=str(top.get("description", "")),
                           teacher=_teacher(top["teacher"], f"{path}: teacher"),
                           compress=_compress(top["compress"], f"{path}: compress") if top.get("compress") else None,
                           students=[_student(s, f"{path}: students[{i}]") for i, s in enumerate(top["students"])])
    cfg.check = {**cfg.check, **_only(top.get("check") or {}, ("n", "mpc_n", "batch_size"), f"{path}: check")}
    cfg.profile = {**cfg.profile, **_only(top.get("profile") or {}, ("n", "network"), f"{path}: profile")}
    return cfg
