"""Model registry in timm's style: entry points only set arguments.

Built-in entries are registered with :func:`register_model`; any timm ``vit_*``,
``deit_*``, ``deit3_*`` (LayerScale), ``tiny_vit_*``, ``beit_*`` (relative position bias,
q/v biases through ``F.linear``), ``swin_*`` (shifted windows: ``torch.roll`` and an
additive mask), ``eva02_*`` (SwiGLU, rotary embeddings) or ``levit_*`` (Hardswish,
BatchNorm1d) architecture is also available by name (random init: no weights are
downloaded). Fused attention is switched off so that softmax stays
visible to tracing.
"""

from __future__ import annotations

from typing import Any, Callable

import timm
import torch.nn as nn
from ..errors import UnknownNameError

__all__ = ["builtin_entry", "create_model", "is_known", "list_models", "register_model"]

ModelFn = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFn] = {}
_TIMM_PREFIXES = ("vit_", "deit_", "deit3_", "tiny_vit_", "beit_", "swin_", "eva02_", "levit_")


def register_model(fn: ModelFn) -> ModelFn:
    """Register ``fn`` under its function name; registering a name twice raises."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models(include_timm: bool = False) -> list[str]:
    """Names of the built-in models, and with ``include_timm`` the supported timm ones."""
    names = sorted(_REGISTRY)
    if include_timm:
        names += sorted(n for n in timm.list_models() if n.startswith(_TIMM_PREFIXES))
    return names


def builtin_entry(name: str) -> ModelFn | None:
    """The entry function registered as ``name``; None for timm and unknown names."""
    return _REGISTRY.get(name)


def is_known(name: str) -> bool:
    """Whether ``name`` is a built-in model or a supported timm architecture."""
    return name in _REGISTRY or (name.startswith(_TIMM_PREFIXES) and name in timm.list_models())


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name with argument overrides (``img_size``, ``num_classes``, ...).

    Raises:
        KeyError: ``name`` is neither built in nor a supported timm architecture.
    """
    timm.layers.set_fused_attn(False)
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    if is_known(name):
        return timm.create_model(name, pretrained=False, **kwargs)
    close = [n for n in list_models() if n.split("_")[:2] == name.split("_")[:2]]
    hint = f"; did you mean one of {close}?" if close else ""
    raise UnknownNameError(
        f"unknown model {name!r}: expected one of {list_models()} or a timm "
        f"{'/'.join(p + '*' for p in _TIMM_PREFIXES)} name{hint}"
    )
