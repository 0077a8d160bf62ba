"""The single import point of CrypTen, with the fixes secvit applies to it.

Everything else in secvit gets crypten from here::

    from protocols.backend import crypten

This module imports CrypTen (the only place that does) and re-exports the session API of
:mod:`protocols.mpc_runtime`, whose modules reach CrypTen through this one; importing it
applies every fix:

* here: CrypTen 0.4.1 imported on current torch, exact fixed-point decoding, shared-tensor
  placeholders that draw no zero shares;
* :mod:`~protocols.mpc_runtime.fast_config`: CrypTen's configuration read as plain
  attributes instead of through OmegaConf (28% of a forward pass's time);
* :mod:`~protocols.mpc_runtime.streams`: every ``torch.Generator`` CrypTen draws shares,
  masks, triples or bits from replaced by a keyed AES-128-CTR stream; the session's key
  agreement;
* :mod:`~protocols.mpc_runtime.keys`, :mod:`~protocols.mpc_runtime.channels`,
  :mod:`~protocols.mpc_runtime.mesh`: TLS 1.3 channels with mutual certificate
  authentication between every pair of processes;
* :mod:`~protocols.mpc_runtime.channel_communicator`: CrypTen's communicator on those
  channels (an opening between two parties is one simultaneous exchange); no pickles;
* :mod:`~protocols.mpc_runtime.communicator`: the same rules for CrypTen's own gloo
  communicator, which only the in-process benchmark baseline still runs on;
* :mod:`~protocols.mpc_runtime.settings`: :class:`MPCSettings`, the dealer (or, behind an
  insecure flag, party 0) as the provider of correlated randomness, exact truncation;
* :mod:`~protocols.mpc_runtime.session`: joining and leaving a session, the dealer's
  messages, counters;
* :mod:`~protocols.mpc_runtime.dry_run`: the requests a computation makes, without running it.

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
from typing import Any

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
import crypten.common.functions as crypten_functions  # noqa: E402
import crypten.common.rng as crypten_rng  # noqa: E402
import crypten.communicator as crypten_comm  # noqa: E402
import crypten.mpc.primitives.arithmetic as crypten_arithmetic  # noqa: E402
import crypten.mpc.primitives.beaver as beaver  # noqa: E402
import crypten.mpc.primitives.binary as crypten_binary  # noqa: E402
import crypten.mpc.provider.tfp_provider as crypten_tfp  # noqa: E402
import crypten.mpc.provider.ttp_provider as crypten_ttp  # noqa: E402
from crypten.communicator.communicator import _logging as count_communication  # noqa: E402
from crypten.communicator.distributed_communicator import DistributedCommunicator  # noqa: E402
from crypten.config import CrypTenConfig, cfg  # noqa: E402
from crypten.encoder import FixedPointEncoder  # noqa: E402
from crypten.mpc.primitives.arithmetic import ArithmeticSharedTensor  # noqa: E402
from crypten.cryptensor import CrypTensor  # noqa: E402
from crypten.mpc.mpc import MPCTensor  # noqa: E402
from crypten.mpc.ptype import ptype as Ptype  # noqa: E402

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

_crypten_mpc_init = MPCTensor.__init__
_PLACEHOLDER = torch.empty(0)


def _mpc_init(self: MPCTensor, tensor: Any, *args: Any, **kwargs: Any) -> None:
    """CrypTen's ``MPCTensor.__init__``, where an empty-list placeholder (``clone``,
    ``shallow_copy``, ``from_shares`` make one and then set its share) is built without
    drawing zero shares: CrypTen tests ``tensor is []``, which never holds, so each
    placeholder drew an empty pseudo-random zero sharing (1,962 per ViT-Lite forward pass,
    0.43 s of party 0's 3.4 s under cProfile)."""
    if isinstance(tensor, list) and not tensor and not args and not kwargs:
        CrypTensor.__init__(self, requires_grad=False)
        self._tensor, self.ptype = _PLACEHOLDER, Ptype.arithmetic  # replaced by the caller, never written
        return
    _crypten_mpc_init(self, tensor, *args, **kwargs)


MPCTensor.__init__ = _mpc_init

_crypten_getattribute = CrypTensor.__getattribute__
_OPERATOR_NAMES = CrypTensor.PYTHON_BUILTIN


def _getattribute(self: CrypTensor, name: str) -> Any:
    """CrypTen's attribute lookup, direct where its autograd is off (secvit's engine never
    differentiates: :data:`CrypTensor.AUTOGRAD_ENABLED` is off from import) and the name is
    not an in-place method: CrypTen wraps every method read (about 22,000 per ViT-Lite
    forward pass) in its debug validator and its autograd dispatch, 9% of party 0's time
    under cProfile. In-place names, methods only an autograd function defines, and
    autograd itself take CrypTen's path."""
    if CrypTensor.AUTOGRAD_ENABLED or (name[-1] == "_" and name[-2:] != "__" and name != "copy_"):
        return _crypten_getattribute(self, name)
    try:
        return object.__getattribute__(self, _OPERATOR_NAMES.get(name, name))
    except AttributeError:
        return _crypten_getattribute(self, name)


CrypTensor.__getattribute__ = _getattribute
CrypTensor.set_grad_enabled(False)

# The session API, defined against the names above (its modules import them from here).
from .mpc_runtime import communicator, fast_config  # noqa: E402,F401  (apply the communicator and config fixes)
from .mpc_runtime.channels import ChannelError  # noqa: E402
from .mpc_runtime.dry_run import dry_run, truncations_of  # noqa: E402
from .mpc_runtime.keys import Keyring, KeyringError, make_keys  # noqa: E402
from .mpc_runtime.mesh import MeshError  # noqa: E402
from .mpc_runtime.session import (  # noqa: E402
    DEALER_COMMANDS,
    Endpoint,
    barrier,
    comm_stats,
    control_channels,
    dealer_rank,
    gather_all,
    init,
    join_as_dealer,
    recv_message,
    reset_comm_stats,
    send_message,
    set_threads,
    shutdown,
    stop_dealer,
)
from .mpc_runtime.settings import (  # noqa: E402
    MAX_PRECISION, MPCSettings, configure, dealer_provider, random_bytes, truncation_stats,
)

__all__ = [
    "CPU",
    "ArithmeticSharedTensor",
    "DistributedCommunicator",
    "MPCTensor",
    "beaver",
    "FixedPointEncoder",
    "RANDOMNESS_MODULES",
    "count_communication",
    "crypten_comm",
    "crypten_functions",
    "ChannelError",
    "DEALER_COMMANDS",
    "Endpoint",
    "Keyring",
    "KeyringError",
    "MAX_PRECISION",
    "MeshError",
    "MPCSettings",
    "barrier",
    "cfg",
    "CrypTenConfig",
    "comm_stats",
    "configure",
    "control_channels",
    "crypten",
    "dealer_provider",
    "dealer_rank",
    "dry_run",
    "gather_all",
    "init",
    "join_as_dealer",
    "make_keys",
    "random_bytes",
    "recv_message",
    "reset_comm_stats",
    "send_message",
    "set_threads",
    "shutdown",
    "stop_dealer",
    "truncation_stats",
    "truncations_of",
]
