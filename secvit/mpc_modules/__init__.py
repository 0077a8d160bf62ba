"""MPC-friendly modules: plaintext ``nn.Module``s whose secure twins run under MPC.

Each holds protocol names from the registry (:mod:`protocols`). In plaintext they run the
protocols' differentiable reference kernels (training, accuracy); each module's file
registers its secure form in the op table (:mod:`secvit.ops`), which runs the same
protocols' secure kernels.
"""

from .attention import MPCAttention, head_groups
from .norm import MPCNorm, channels_last
from .single_protocol import MPCActivation, MPCSoftmax

MPC_MODULES = (MPCAttention, MPCActivation, MPCNorm, MPCSoftmax)
"""Every MPC module type (what the rewriter puts in)."""

__all__ = ["MPC_MODULES", "MPCActivation", "MPCAttention", "MPCNorm", "MPCSoftmax", "channels_last", "head_groups"]
