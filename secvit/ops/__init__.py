"""The op table (:mod:`.table`) with torch's and timm's entries registered
(:mod:`.builtin`); secvit's MPC modules register theirs in :mod:`secvit.mpc_modules`."""

from . import builtin  # noqa: F401  (registers torch's and timm's ops)
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

__all__ = ["KINDS", "Op", "UnsupportedOpError", "function_op", "kind_of", "leaf_types", "listening", "method_op",
           "module_op", "node_kind", "own_tensors", "region", "register_function", "register_method",
           "register_module"]
