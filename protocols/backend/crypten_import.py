"""Importing CrypTen 0.4.1 on current torch (the only file with ``import crypten``), and
its fixed-point decoding fixed.

PyPI ``crypten==0.4.1`` imports ``torch.onnx._internal.registration`` (for its ONNX model
converter), a module that current torch no longer has. The MPC core never uses it, so a
stand-in module with a ``registry`` attribute is registered under that name before
``import crypten``. ``crypten.nn.from_pytorch`` stays unusable; secvit does not use it.

CrypTen 0.4.1's ``FixedPointEncoder.decode`` floor-divides negative values by
``scale - 1``: a revealed value within ~|x| / 2^16 above a negative integer (e.g. an
encoding of -1.99998) decodes one too low (-2.99998). :func:`_exact_decode` replaces it.
"""

from __future__ import annotations

import sys
import types

import torch


def _install_onnx_registration_standin() -> None:
    name = "torch.onnx._internal.registration"
    try:
        __import__(name)
    except ImportError:
        standin = types.ModuleType(name)
        standin.registry = None  # crypten only reads this attribute at import time
        sys.modules[name] = standin


_install_onnx_registration_standin()

import crypten  # noqa: E402  (must follow the stand-in)
import crypten.common.rng as crypten_rng  # noqa: E402
import crypten.communicator as crypten_comm  # noqa: E402
import crypten.mpc.primitives.arithmetic as crypten_arithmetic  # noqa: E402
import crypten.mpc.primitives.binary as crypten_binary  # noqa: E402
import crypten.mpc.provider.tfp_provider as crypten_tfp  # noqa: E402
import crypten.mpc.provider.ttp_provider as crypten_ttp  # noqa: E402
from crypten.communicator.communicator import _logging as count_communication  # noqa: E402
from crypten.communicator.distributed_communicator import DistributedCommunicator  # noqa: E402
from crypten.config import cfg  # noqa: E402
from crypten.encoder import FixedPointEncoder  # noqa: E402
from crypten.mpc.primitives.arithmetic import ArithmeticSharedTensor  # noqa: E402

__all__ = ["CPU", "ArithmeticSharedTensor", "DistributedCommunicator", "RANDOMNESS_MODULES", "cfg",
           "count_communication", "crypten", "crypten_comm"]

RANDOMNESS_MODULES = (crypten_rng, crypten_arithmetic, crypten_binary, crypten_tfp, crypten_ttp)
"""CrypTen's modules that bind its random-tensor functions at import."""

CPU = torch.device("cpu")


def _exact_decode(self: FixedPointEncoder, tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Fixed-point integers to floats: floor quotient and remainder by the scale."""
    if tensor is None or self._scale == 1:
        return None if tensor is None else tensor.data
    quotient = tensor.div(self._scale, rounding_mode="floor")
    return (quotient.float() + (tensor - quotient * self._scale).float() / self._scale).data


FixedPointEncoder.decode = _exact_decode
