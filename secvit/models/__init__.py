"""Models: the built-in ViT-Lite family and timm ViTs by name."""

from . import vit_lite  # noqa: F401  (registers the built-in entries)
from .registry import create_model, is_known, list_models, register_model

__all__ = ["create_model", "is_known", "list_models", "register_model"]
