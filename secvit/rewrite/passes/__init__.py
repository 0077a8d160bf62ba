"""Rewrite passes, one per file, run in this order."""

from .activation import replace_activation
from .attention import replace_attention
from .calls import replace_calls
from .fold_affine import fold_norm_affine
from .norm import replace_norm

PASSES = (replace_attention, replace_activation, replace_norm, replace_calls, fold_norm_affine)

__all__ = ["PASSES", "fold_norm_affine", "replace_activation", "replace_attention", "replace_calls", "replace_norm"]
