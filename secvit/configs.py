"""The project's YAML configurations (``configs/``): one loader for "a shipped name, or a
path to a YAML file", shared by rewrite policies and network profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["CONFIG_DIR", "read_config", "shipped"]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped(kind: str) -> list[str]:
    """Names of the shipped configurations of ``kind`` (a folder of ``configs/``)."""
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))


def read_config(spec: str | Path, kind: str, what: str, error: type[Exception]) -> tuple[Path, Any]:
    """The path and parsed YAML of ``spec``: a shipped name of ``kind`` (no suffix) or a path.

    Raises:
        error: an unknown name (listing the shipped ones), or a file that cannot be read
            or parsed, naming it.
    """
    path = Path(spec)
    if not path.suffix:
        path = CONFIG_DIR / kind / f"{spec}.yaml"
    if not path.exists():
        raise error(f"unknown {what} {str(spec)!r}; known: {', '.join(shipped(kind))} (or a YAML path)")
    try:
        return path, yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise error(f"{path}: not readable YAML ({e})") from None
