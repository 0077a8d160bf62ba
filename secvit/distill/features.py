"""Intermediate features of a ViT during its forward pass, for feature distillation.

Works on plain timm ViTs and on rewritten ones (fx graph modules, where blocks are inlined
but norms and attentions stay modules): the hidden states are the inputs of every
block's ``norm1`` (the embedding output, then each block's output) and of the final
``norm`` (the last block's output); attention logits are recomputed from each
attention's input (q k^T scaled, position biases added), with gradients.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.vision_transformer import Attention

from ..mpc_modules import MPCAttention
from ..rewrite.graph import block_layers
from ..errors import UsageError

__all__ = ["FeatureTap", "attention_logits"]


def attention_logits(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(b, heads, n, n) pre-softmax logits of a timm ``Attention`` or an :class:`MPCAttention`."""
    if isinstance(attn, MPCAttention):
        return attn.logits_and_values(x)[0]
    if not isinstance(attn, Attention):
        raise ValueError(f"no attention logits for {type(attn).__name__}")
    b, n, c = x.shape
    q, k, _ = attn.qkv(x).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    return (attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)


class FeatureTap:
    """Records hidden states (``hidden``: L + 1 of them) and attention inputs of ``model``
    during its latest forward (each forward starts afresh).

    Args:
        model: A ViT whose blocks have ``norm1`` and ``attn`` and whose last norm is ``norm``.
        attention: Also record attention inputs (for :meth:`attention_logits`).

    Raises:
        ValueError: the model does not have that layout.
    """

    def __init__(self, model: nn.Module, attention: bool = True):
        blocks = block_layers(model)
        modules = dict(model.named_modules())
        hidden = [f"{b}.norm1" for b in blocks] + ["norm"]
        attns = [f"{b}.attn" for b in blocks] if attention else []
        missing = [name for name in hidden + attns if name not in modules]
        if not blocks or missing:
            raise UsageError(f"feature distillation needs a ViT with blocks.i.norm1/attn and norm (missing {missing})")
        self.layers = len(blocks)
        self.hidden: list[torch.Tensor] = []
        self._attn_inputs: list[tuple[nn.Module, torch.Tensor]] = []
        self._handles = [model.register_forward_pre_hook(lambda module, args: self.clear())]
        self._handles += [modules[name].register_forward_pre_hook(self._keep_hidden) for name in hidden]
        self._handles += [modules[name].register_forward_pre_hook(self._keep_attention) for name in attns]

    def _keep_hidden(self, module: nn.Module, args: tuple) -> None:
        self.hidden.append(args[0])

    def _keep_attention(self, module: nn.Module, args: tuple) -> None:
        self._attn_inputs.append((module, args[0]))

    def clear(self) -> None:
        """Forget the last forward's features."""
        self.hidden, self._attn_inputs = [], []

    def attention_logits(self) -> list[torch.Tensor]:
        """Each layer's attention logits of the last forward, in order."""
        return [attention_logits(m, x) for m, x in self._attn_inputs]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
