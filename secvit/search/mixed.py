"""The search's relaxed attention (Zeng et al., MPCViT, ICCV 2023).

Each head h mixes the two attentions with a learned weight alpha_h in [0, 1] (init 1):
alpha_h * RSAttn + (1 - alpha_h) * ScaleAttn, i.e. ``softmax.relu`` and
``softmax.scaling`` reference kernels, all heads in one tensor op. The training loss adds
``lam`` * sum_h alpha_h * c_h / sum_h c_h (:meth:`MixedAttention.regularization`), with
c_h the bytes per party of one head's ``softmax.relu`` under MPC minus those of
``softmax.scaling`` (zero), taken from the protocol registry's costs (counted from an emulated run of the
secure kernel), which the registry test proves equal to the measured ones. Bytes add up over heads; rounds do not
(heads of one layer share their rounds): a round budget is met at binarisation, layer by
layer (:func:`secvit.search.search.binarise`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

import protocols

from ..mpc_modules import MPCAttention

__all__ = ["RELU", "SCALING", "MixedAttention", "head_cost", "layer_rounds"]

RELU, SCALING = "softmax.relu", "softmax.scaling"


def head_cost(tokens: int) -> int:
    """Bytes per party one head saves under MPC by scaling instead of ReLU-softmax."""
    shape = (1, 1, tokens, tokens)
    return protocols.get(RELU).total_cost(shape).bytes - protocols.get(SCALING).total_cost(shape).bytes


def layer_rounds(tokens: int, attn: MPCAttention) -> int:
    """Rounds a layer adds under MPC once any of its heads keeps ReLU-softmax (the layer's
    ReLU-softmax heads run as one op, so the rounds do not grow with their number)."""
    shape = (1, attn.num_heads, tokens, tokens)
    return protocols.get(RELU).total_cost(shape).rounds - protocols.get(SCALING).total_cost(shape).rounds


class MixedAttention(nn.Module):
    """An :class:`MPCAttention` whose heads mix RSAttn and ScaleAttn by ``alpha``.

    Args:
        attn: The attention whose projections (and biases) it uses.
        tokens: Tokens per image (for the cost of a head).
        lam: Weight of the cost term.
        alpha_lr_scale: The alphas' learning rate as a multiple of the weights' (the
            architecture parameters must move over a few epochs; DARTS-style searches
            give them their own learning rate).
    """

    def __init__(self, attn: MPCAttention, tokens: int, lam: float, alpha_lr_scale: float = 1.0):
        super().__init__()
        self.attn, self.lam, self.tokens = attn, lam, tokens
        self.alpha = nn.Parameter(torch.ones(attn.num_heads))
        self.alpha.lr_scale = alpha_lr_scale
        self.register_buffer("cost", torch.full((attn.num_heads,), float(head_cost(tokens))), persistent=False)
        self.total_cost = 1.0  # set by the search to the sum over every head of the model

    def weights(self) -> torch.Tensor:
        """alpha clamped to [0, 1] in value, with the gradient of alpha itself (at the
        initial alpha = 1 a plain clamp would pass no gradient at all)."""
        return self.alpha + (self.alpha.clamp(0.0, 1.0) - self.alpha).detach()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("the search does not support attention masks")
        logits, v = self.attn.logits_and_values(x)
        a = self.weights().view(1, -1, 1, 1)
        mixed = a * protocols.get(RELU).reference(logits) + (1 - a) * protocols.get(SCALING).reference(logits)
        return self.attn.output(mixed, v)

    def regularization(self) -> torch.Tensor:
        """``lam`` * this layer's share of the model's ReLU-softmax bytes."""
        return self.lam * (self.weights() * self.cost).sum() / self.total_cost
