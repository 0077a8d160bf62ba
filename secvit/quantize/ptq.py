"""Post-training quantization of a plain ViT checkpoint (``secvit quantize``).

Three methods, each at W weight bits and A activation bits, calibrated on a few training
images:

- ``minmax`` (the baseline): per-tensor min-max uniform quantizers for weights, every
  Linear layer's input and the post-softmax attention.
- ``repq`` (RepQ-ViT, Li et al., ICCV 2023): per-output-channel weights; post-LayerNorm
  activations calibrated per channel (s_c, z_c), then reparameterized to one layer-wise
  quantizer (s~ = mean s, z~ = round(mean z), r1 = s / s~, r2 = z - z~) by folding
  into the LayerNorm (gamma / r1, (beta + s r2) / r1) and the next Linear (W r1 on its
  input columns, b - W (s r2)), which leaves the float model unchanged; post-softmax
  by the log-sqrt2 quantizer.
- ``isvit`` (I&S-ViT, Zhong et al., 2023): per-output-channel weights; post-softmax by the
  shift-uniform-log2 quantizer; the three-stage smooth optimization: (1) channel-wise
  post-LayerNorm quantizers, the weights tuned against the float model's logits (MSE,
  rounding by straight-through gradients); (2) the channel-wise quantizers reparameterized
  to layer-wise ones as RepQ-ViT does; (3) tuned again.

Under MPC the quantized weights run as they are (they are the checkpoint's weights), and
so does RepQ's fold; rounding an activation to its quantization grid needs a comparison
per level crossed (a secure rounding), which the engine does not pay: the activation
quantizers are plaintext-only, and the report says which was kept.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .quantizers import fit_shift_uniform_log2, log_sqrt2, shift_uniform_log2, uniform, uniform_params

__all__ = ["METHODS", "SECURE_DROPPED", "SECURE_KEPT", "bake_weights", "fake_quantized", "quantize_weights",
           "quantized_copy", "reparameterize", "tune"]

METHODS = ("minmax", "repq", "isvit")
SECURE_KEPT = "weights (the checkpoint's own), RepQ's LayerNorm/Linear fold"
SECURE_DROPPED = ("activation quantizers (post-LayerNorm, Linear inputs, post-softmax): rounding a secret to a "
                  "grid needs a comparison per level, which the secure engine does not pay")


class _WeightQuant(nn.Module):
    """Fake quantization of a weight (per output channel or per tensor), gradients straight through."""

    def __init__(self, bits: int, per_channel: bool):
        super().__init__()
        self.bits, self.per_channel = bits, per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.flatten(1) if self.per_channel else w.flatten()[None]
        scale, zero = uniform_params(flat.min(1).values, flat.max(1).values, self.bits)
        return uniform(flat, scale[:, None], zero[:, None], self.bits).view_as(w)


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _post_ln_pairs(model: nn.Module) -> list[tuple[nn.LayerNorm, nn.Linear]]:
    """Each block's (norm1, attn.qkv) and (norm2, mlp.fc1): the post-LayerNorm activations."""
    return [(b.norm1, b.attn.qkv) for b in model.blocks] + [(b.norm2, b.mlp.fc1) for b in model.blocks]


@contextmanager
def _recording(modules: list[nn.Module], inputs: bool) -> Iterator[dict[nn.Module, list[torch.Tensor]]]:
    """Each module's inputs (or outputs) during the block."""
    seen: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in modules}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen[m].append(a[0].detach())) if inputs else
             m.register_forward_hook(lambda m, a, out: seen[m].append(out.detach())) for m in modules]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def _channel_ranges(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    flat = torch.cat([v.reshape(-1, v.shape[-1]) for v in values])
    return flat.min(0).values, flat.max(0).values


@torch.no_grad()
def reparameterize(model: nn.Module, calib: torch.Tensor, bits: int) -> None:
    """RepQ-ViT's fold of channel-wise post-LayerNorm quantizers into layer-wise ones (in
    place; the float model's outputs are unchanged)."""
    pairs = _post_ln_pairs(model)
    with _recording([n for n, _ in pairs], inputs=False) as seen:
        model(calib)
    for norm, linear in pairs:
        s, z = uniform_params(*_channel_ranges(seen[norm]), bits)
        r1, r2 = s / s.mean(), z - z.mean().round()
        linear.bias -= linear.weight @ (s * r2)
        linear.weight *= r1
        norm.bias.copy_((norm.bias + s * r2) / r1)
        norm.weight /= r1


def quantize_weights(model: nn.Module, bits: int, per_channel: bool) -> None:
    """Every Linear's weight fake-quantized in place (kept as a parametrization until
    :func:`bake_weights`)."""
    for m in _linears(model):
        parametrize.register_parametrization(m, "weight", _WeightQuant(bits, per_channel))


def bake_weights(model: nn.Module) -> None:
    """Replace each parametrized weight by its quantized value."""
    for m in _linears(model):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


@contextmanager
def fake_quantized(model: nn.Module, calib: torch.Tensor, bits: int, method: str,
                   channel_wise_ln: bool = False) -> Iterator[nn.Module]:
    """``model`` with activation quantizers at ``bits`` (calibrated on ``calib``) inside the
    block: each Linear's input (post-LayerNorm ones channel-wise if ``channel_wise_ln``) and
    the post-softmax attention (by ``method``'s quantizer)."""
    drops = [b.attn.attn_drop for b in model.blocks]
    linears = _linears(model)
    with torch.no_grad(), _recording(linears + drops, inputs=True) as seen:
        model(calib)
    post_ln = {lin for _, lin in _post_ln_pairs(model)} if channel_wise_ln else set()
    params = {}
    for lin in linears:
        low, high = _channel_ranges(seen[lin])
        if lin not in post_ln:
            low, high = low.min(), high.max()
        params[lin] = uniform_params(low, high, bits)
    probs = torch.cat([p.flatten() for d in drops for p in seen[d]])
    sulq = fit_shift_uniform_log2(probs, bits) if method == "isvit" else None

    def softmax_quant(x: torch.Tensor) -> torch.Tensor:
        if method == "repq":
            return log_sqrt2(x, bits)
        if method == "isvit":
            return shift_uniform_log2(x, bits, *sulq)
        return uniform(x, *uniform_params(torch.zeros(()), torch.ones(()), bits), bits)

    hooks = [lin.register_forward_pre_hook(lambda m, a: (uniform(a[0], *params[m], bits),)) for lin in linears]
    hooks += [d.register_forward_pre_hook(lambda m, a: (softmax_quant(a[0]),)) for d in drops]
    try:
        yield model
    finally:
        for h in hooks:
            h.remove()


def tune(model: nn.Module, target: torch.Tensor, calib: torch.Tensor, steps: int, lr: float = 1e-5) -> None:
    """I&S-ViT's smooth optimization step: the (fake-quantized) model's weights moved to
    bring its logits on ``calib`` closer to the float model's ``target`` (MSE)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.eval()
    for _ in range(steps):
        loss = F.mse_loss(model(calib), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def quantized_copy(model: nn.Module, calib: torch.Tensor, w_bits: int, a_bits: int, method: str,
                   tune_steps: int = 20) -> nn.Module:
    """A copy of the plain ``model`` quantized by ``method`` (weights baked in; activation
    quantizers applied with :func:`fake_quantized`)."""
    if method not in METHODS:
        raise ValueError(f"unknown PTQ method {method!r}; known: {', '.join(METHODS)}")
    model = copy.deepcopy(model).eval()
    if method == "repq":
        reparameterize(model, calib, a_bits)
    if method == "isvit":
        with torch.no_grad():
            target = model(calib)
        quantize_weights(model, w_bits, per_channel=True)
        with fake_quantized(model, calib, a_bits, method, channel_wise_ln=True):
            tune(model, target, calib, tune_steps)  # stage 1: channel-wise post-LayerNorm quantizers
        bake_weights(model)
        reparameterize(model, calib, a_bits)  # stage 2
        quantize_weights(model, w_bits, per_channel=True)
        with fake_quantized(model, calib, a_bits, method):
            tune(model, target, calib, tune_steps)  # stage 3: layer-wise
    else:
        quantize_weights(model, w_bits, per_channel=method == "repq")
    bake_weights(model)
    return model
