"""MPC kernels: secure CrypTen kernels with plaintext references (never imports secvit).

Importing the package registers every protocol: ``protocols.get("softmax.2quad")``,
``protocols.names(kind="softmax")``.
"""

from . import activation, norm, softmax  # noqa: F401  (register the protocols)
from .registry import Protocol, get, names, protocols

__all__ = ["Protocol", "get", "names", "protocols"]
