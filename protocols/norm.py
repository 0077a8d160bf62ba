"""Normalisation kernels: LayerNorm (CrypTen has none) and its affine replacements.

``norm.affine`` (after MPCFormer's replacement of LayerNorm; Li et al., ICLR 2023):
x * a + b with per-channel a, b fixed after training (calibrated or learned): one
product by the owner's secret a, no inverse square root.

``norm.batch`` (Ioffe and Szegedy, "Batch Normalization", ICML 2015; in place of
LayerNorm as CrypTen re-implementations of MPCViT do): trained with the statistics of
each batch (over batch and tokens, per channel) and running estimates mu_c, var_c; at
inference (x - mu_c) / sqrt(var_c + eps) * gamma_c + beta_c is the per-channel affine
x a + b with a = gamma / sqrt(var + eps), b = beta - mu a, which the owner computes in
plaintext. Its secure kernel is ``norm.affine``'s on (a, b): one product and one
truncation (2 rounds), and none at all once the rewriter folds (a, b) into the Linear
layers that read the norm (``fold_affine``: 0 rounds, 0 bytes).

``layer_norm``: (x - mu) * (var + eps)^(-1/2) * gamma + beta over the last dimension
(Ba et al., "Layer Normalization", 2016). mu and the sum of squares S = sum (x - mu)^2
are local sums plus one squaring. LayerNorm is invariant to a public rescaling of its
input (with eps rescaled too), so the inverse square root runs on
v = k (var + eps) = S k / n + k eps with k = ``var_scale``.

The inverse square root refines a guess y0 by ``iters`` Goldschmidt steps (Goldschmidt,
1964; Markstein, "Software Division and Square Root Using Goldschmidt's Algorithms",
2004): g0 = v y0 / c, h0 = c y0 / 2, then r = 1/2 - g h, (g, h) <- (g + g r, h + h r);
h converges to c / (2 sqrt v), so c = 2 sqrt(k) gives LayerNorm's 1 / sqrt(var + eps)
with no product after. Each step converges like a Newton-Raphson step but costs two
products, not three, and g h stays at 2p fractional bits (:meth:`mul_untruncated`): its
truncation and that of (g, h) r are one (3 rounds per step). All of it runs on one
value per row (rounds, not bytes).

The guess comes from the range the kernel knows: v in [V_MIN, V_MAX] = [0.0028, 384] is
cut at V_MIN 2^i (i = 1..17); one batched comparison of each row's sum of squares S
against the knots mapped back through k / n and k eps (one sign test with the dealer's
keys, :mod:`.dcf`: one key per row evaluated at the 17 knots, 16 bytes per row) says
which piece v is in, and the piece's levels (integers: bits times integer steps, no
truncation) give y0 = 1/sqrt of the piece's geometric middle, within a factor 2^(1/4)
of 1/sqrt(v). g0 and r0 = 1/2 - g0 h0 are then affine in S with selected slopes (at p + 8
bits: as small as 2e-4) and intercepts: one product of S by both slopes (2 rounds), so
the first step costs 4 rounds with the guess and each further one 3. 3 steps reach
relative error 3.4e-5 on the whole range (the 16-bit result is no better than 4e-4
relative at large variances, where h ~ 0.03); the exponential guess this replaced, after
CrypTen's, took 10 squarings and 8 steps; a line per piece instead of a level would
need slopes down to 1e-4 in the iteration itself. That range is (k = 3.2) row variances
in [8.8e-4, 120] (CrypTen's 3 Newton-Raphson steps: [0.126, 126]). Trained ViTs need
that span: the shipped ViT-Lite sees row variances from 9e-4 (the CLS row entering block
0) to 16, its MPCViT fine-tune up to 52, its MPCFormer fine-tune up to 63.7 (final norm,
2,000 augmented digits). Beyond V_MAX the guess stays that of the top piece, which the
iteration still corrects up to v of about 3 V_MAX.

Fixed-point precision at small variances: v = 2.8e-3 holds only 183 units of 2^-16, so
v itself never enters the arithmetic: g0 takes S (n / k times more units) and its slope
at p + 8 bits, and the fixed point of the iteration is 1/sqrt of that precise v.
The centred values c are opened once for both their squares and their product by gamma
(the owner's weight, with a fixed mask: :func:`~protocols.stationary.square_and_stationary_product`),
both kept at 2p fractional bits: the squares are summed before their truncation (one
value per row), and (c gamma) h is truncated once, by 2^(2p) (|y| < 2^14 at p = 16).

Rounds: 1 (the mean's truncation) + 1 (squares and c gamma) + 1 (the sum's truncation
and its comparison with the knots: one opening, the dealer's truncation pair and keys
made from one mask) + 4 (g0, r0 and the first step) + 3 per further step + 2
(normalise): 15 with the defaults, gamma included (23 with CrypTen's 8-round comparison
and without the shared openings). Bytes per element of x: 48 (three openings of the
whole tensor), where a truncated square and two truncated products opened six.
"""

from __future__ import annotations


import torch

from .fixed_point import from_units, precision_bits, stack
from .range_guess import geometric_pieces, select_units
from .registry import Protocol, register

__all__ = ["LN_ITERS", "LN_VAR_SCALE", "batch_norm_reference", "folded_batch_norm", "inv_sqrt_goldschmidt",
           "layer_norm_reference", "layer_norm_secure"]

LN_ITERS = 3
LN_VAR_SCALE = 3.2
V_MIN, V_MAX = 0.0028, 384.0  # the range of v = k (var + eps) the inverse square root covers
GUESS_KNOTS, _MIDDLES = geometric_pieces(V_MIN, V_MAX, ratio=2.0)  # pieces of ratio 2 in v
SLOPE_EXTRA_BITS = 8  # g0's slope y0 scale / c is as small as 2e-4: 8 more bits than p


def layer_norm_secure(
    x, weight=None, bias=None, eps: float = 1e-5, iters: int = LN_ITERS, var_scale: float = LN_VAR_SCALE
):
    """LayerNorm of a CrypTensor over its last dimension; ``weight``/``bias`` may be secret."""
    n = x.size(-1)
    centered = x - x.mean(-1, keepdim=True)
    squares, scaled = centered.square_mul_untruncated(weight)  # c^2 and c gamma at 2p bits, one opening
    h = inv_sqrt_goldschmidt(squares.sum(-1, keepdim=True), var_scale / n, eps * var_scale, iters, var_scale**0.5)
    y = centered * h if scaled is None else h.mul_wide(scaled)
    return y if bias is None else y + bias


def inv_sqrt_goldschmidt(s_wide, scale: float, shift: float = 0.0, iters: int = LN_ITERS, out_scale: float = 1.0):
    """``out_scale / sqrt(v)`` for v = s * scale + shift (s a positive secret held at twice
    the fractional bits, an untruncated sum of squares; scale and shift public); see the
    module docstring. s's truncation and its comparison with the knots share one opening."""
    c = 2.0 * out_scale
    guess = _MIDDLES**-0.5
    s, bits = s_wide.truncate_wide_at_least(tuple((k - shift) / scale for k in GUESS_KNOTS))
    bits = bits.reshape(len(GUESS_KNOTS), -1)
    p = precision_bits(s)
    fine = p + SLOPE_EXTRA_BITS
    slopes = select_units(bits, torch.stack([guess * scale / c, guess**2 * scale / 2]), fine, s.size())
    levels = select_units(bits, torch.stack([guess * shift / c, 0.5 - guess**2 * shift / 2, guess * c / 2]), p, s.size())
    intercept, r_intercept, h = from_units(levels).unbind(0)
    s_g, s_r = (s * slopes).div(2**fine).unbind(0)  # one product: v y0 / c and v y0^2 / 2, less their constants
    gh = stack([s_g + intercept, h])
    gh = gh + gh * (r_intercept - s_r)  # the first step, r0 = 1/2 - g0 h0
    for _ in range(iters - 1):
        gh = gh + gh.mul_wide(0.5 - gh[0].mul_untruncated(gh[1]))  # r at 2p bits: one truncation per step
    return gh[1]


def layer_norm_reference(x: torch.Tensor, weight=None, bias=None, eps: float = 1e-5, **_) -> torch.Tensor:
    """Plaintext LayerNorm over the last dimension."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)


def affine_norm_secure(x, weight=None, bias=None, **_):
    """x * a + b with the owner's per-channel a and b."""
    y = x * weight if weight is not None else x
    return y + bias if bias is not None else y


def affine_norm_reference(x: torch.Tensor, weight=None, bias=None, **_) -> torch.Tensor:
    y = x * weight if weight is not None else x
    return y + bias if bias is not None else y


def batch_norm_reference(x: torch.Tensor, weight=None, bias=None, eps: float = 1e-5, running_mean=None,
                         running_var=None, training: bool = False, momentum: float = 0.1) -> torch.Tensor:
    """BatchNorm over the last dimension (every other dimension is the batch). Without
    running statistics the statistics are already folded into ``weight``/``bias`` (what
    the secure kernel is given): x * weight + bias."""
    if running_mean is None:
        return affine_norm_reference(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    y = torch.nn.functional.batch_norm(flat, running_mean, running_var, weight, bias, training, momentum, eps)
    return y.reshape(x.shape)


def folded_batch_norm(weight, bias, running_mean, running_var, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The inference-time affine (a, b) of a BatchNorm: a = gamma / sqrt(var + eps),
    b = beta - mu a (``weight``/``bias`` may be None: gamma = 1, beta = 0)."""
    a = (running_var + eps).rsqrt()
    if weight is not None:
        a = a * weight
    b = -running_mean * a
    return a, b if bias is None else b + bias


register(Protocol(
    name="norm.layer", kind="norm", secure=layer_norm_secure, reference=layer_norm_reference,
    formula="(x - mu) (var + eps)^(-1/2) gamma + beta", paper="Ba et al. 2016; inverse sqrt by Goldschmidt steps",
    valid_range=(-4.0, 4.0), tolerance=5e-3,
))
register(Protocol(
    name="norm.affine", kind="norm", secure=affine_norm_secure, reference=affine_norm_reference,
    formula="x a + b (per channel)", paper="MPCFormer (Li et al., ICLR 2023)", valid_range=(-8.0, 8.0),
    tolerance=1e-3,
))
register(Protocol(
    name="norm.batch", kind="norm", secure=affine_norm_secure, reference=batch_norm_reference,
    formula="(x - mu_c) (var_c + eps)^(-1/2) gamma + beta, running statistics: x a + b",
    paper="BatchNorm (Ioffe and Szegedy, ICML 2015), folded at inference (MPCViT)", valid_range=(-8.0, 8.0),
    tolerance=1e-3,
))
