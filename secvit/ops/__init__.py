"""The op table (:mod:`.table`) with torch's and timm's entries registered
(:mod:`.builtin`); secvit's MPC modules register theirs in :mod:`secvit.mpc_modules`."""

from . import builtin  # noqa: F401  (registers torch's and timm's ops)
from .builtin import linear_of
from .regions import listening, region
from .table import (
    KINDS,
    Op,
    UnsupportedOpError,
    function_op,
    kind_of,
    leaf_types,
    method_op,
    module_op,
    node_kind,
    own_tensors,
    register_function,
    register_method,
    register_module,
)

__all__ = ["KINDS", "Op", "UnsupportedOpError", "function_op", "kind_of", "leaf_types", "linear_of", "listening", "method_op",
           "module_op", "node_kind", "own_tensors", "region", "register_function", "register_method",
           "register_module"]
