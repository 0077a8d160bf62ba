"""Secure kernels against their plaintext references, with their round counts."""

from __future__ import annotations

import pytest
import torch

from protocols import backend, costs
from protocols.activation import (
    gelu_erf_reference,
    gelu_erf_secure,
    gelu_fourier_reference,
    gelu_fourier_secure,
    gelu_series,
)
from protocols.backend import crypten
from protocols.fixed_point import FixedPoint
from protocols.norm import layer_norm_reference, layer_norm_secure
from protocols.softmax import reciprocal_series, softmax_exact_reference, softmax_exact_secure

from .conftest import as_tensor, run_2pc


def _secure(kernel, *plain: torch.Tensor, **kwargs):
    def fn(rank: int):
        enc = [crypten.cryptensor(t, src=0) for t in plain]
        backend.reset_comm_stats()
        out = kernel(*enc, **kwargs)
        stats = backend.comm_stats()
        return out.get_plain_text(), stats["rounds"], stats["bytes"]

    out, rounds, nbytes = run_2pc(fn)[0]
    return as_tensor(out), rounds, nbytes


def _with_truncations(base: costs.Cost, kernel, *plain: torch.Tensor) -> tuple[int, int]:
    """``base`` (openings of products and comparisons) plus the kernel's exact truncations."""
    calls, elements = backend.truncations_of(lambda: kernel(*[crypten.cryptensor(t, src=0) for t in plain]))
    total = base + costs.truncation(calls, elements)
    return total.rounds, total.bytes


def test_gelu_erf_series_in_its_range():
    x = torch.linspace(-2.5, 2.5, 501)
    out, rounds, nbytes = _secure(gelu_erf_secure, x)
    assert (out - gelu_erf_reference(x, terms=8)).abs().max() < 2e-3
    assert (out - gelu_erf_reference(x)).abs().max() < 1e-2
    assert (rounds, nbytes) == _with_truncations(costs.Cost(6, 240 * 501), gelu_erf_secure, x)


def test_gelu_fourier_is_exact_gelu_on_a_wide_range():
    x = torch.linspace(-26, 26, 1001)
    out, rounds, nbytes = _secure(gelu_fourier_secure, x)
    assert (out - gelu_erf_reference(x)).abs().max() < 3e-4
    assert (gelu_fourier_reference(x) - gelu_erf_reference(x)).abs().max() < 5e-5
    assert (rounds, nbytes) == _with_truncations(costs.Cost(1, 16 * 1001), gelu_fourier_secure, x)
    assert (rounds, nbytes) == (2, 32 * 1001)


def test_gelu_series_fit_is_reproducible():
    series = gelu_series()
    assert (series.period_bits, series.first, series.step, len(series.sin)) == (6, 1, 2, 20)
    assert series.sin[0] == pytest.approx(0.63356, abs=1e-4)


def test_gelu_erf_fewer_rounds_than_crypten_erf():
    x = torch.linspace(-3, 3, 64)

    def crypten_gelu(t):
        return t * ((t * (2 ** -0.5)).erf() + 1) * 0.5

    _, ours, our_bytes = _secure(gelu_erf_secure, x)
    _, theirs, their_bytes = _secure(crypten_gelu, x)
    assert ours < theirs and our_bytes < their_bytes


def test_layer_norm_matches_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 32) * 3 + 1
    w, b = torch.randn(32), torch.randn(32)
    out, rounds, _ = _secure(layer_norm_secure, x, w, b)
    assert (out - layer_norm_reference(x, w, b)).abs().max() < 5e-2


def test_softmax_matches_reference():
    torch.manual_seed(0)
    s = torch.randn(2, 4, 17, 17) * 3
    out, _, _ = _secure(softmax_exact_secure, s)
    assert (out - softmax_exact_reference(s)).abs().max() < 1e-2


def test_softmax_exact_beats_cryptens_in_error_and_rounds():
    """Fourier shift, exp and reciprocal against CrypTen's max, limit exp and division."""
    torch.manual_seed(0)
    s = torch.randn(2, 4, 17, 17) * 3

    def crypten_exp_softmax(t):
        numerator = (t - t.max(-1, keepdim=True)[0]).exp()
        return numerator / numerator.sum(-1, keepdim=True)

    ours, our_rounds, our_bytes = _secure(softmax_exact_secure, s)
    theirs, their_rounds, their_bytes = _secure(crypten_exp_softmax, s)
    exact = softmax_exact_reference(s)
    assert (ours - exact).abs().max() < 0.25 * (theirs - exact).abs().max()
    assert (ours - exact).abs().max() < 2e-4
    steps = reciprocal_series(17)[1]
    assert our_rounds == 2 * 5 + 8 + 4 * (steps - 1) and our_rounds < their_rounds / 4 and our_bytes < their_bytes / 5


def test_softmax_reciprocal_covers_its_whole_range():
    # row sums at both ends of [1, N]: one dominant logit (S = 1) and all equal (S = N)
    n = 65
    s = torch.stack([torch.cat([torch.tensor([30.0]), torch.zeros(n - 1)]), torch.zeros(n)])
    out, rounds, _ = _secure(softmax_exact_secure, s)
    assert (out - softmax_exact_reference(s)).abs().max() < 1e-4
    assert rounds == 22 and reciprocal_series(65)[1] == 1 and reciprocal_series(197)[1] == 1


def test_softmax_shift_error_over_256_tokens_stays_inside_exps_range():
    """The ReLU series errs by at most ``below`` under and ``above`` over ReLU on the whole
    spread; over ceil(log2 256) = 8 levels the shift m is in [max - 8 below, max + 8 above],
    so s - m for rows spread up to 96 stays in exp's fitted range [-98, 1.5]."""
    from protocols.softmax import EXACT_SPREAD, relu_series

    d = torch.linspace(-EXACT_SPREAD, EXACT_SPREAD, 400001, dtype=torch.float64)
    error = relu_series().reference(d) - d.clamp_min(0)
    below, above = float(-error.min()), float(error.max())
    assert 8 * below <= 1.5 and -EXACT_SPREAD - 8 * above >= -98
    g = torch.Generator().manual_seed(0)
    rows = torch.rand(4, 256, generator=g) * 96 - 48
    rows[:, 0], rows[:, -1] = 48.0, -48.0
    rows[1] = rows[0].flip(-1)
    rows[2, 1:] = 47.5  # near-ties at the top: the series' largest error, every level
    emulated = softmax_exact_secure(FixedPoint(16).tensor(rows)).get_plain_text()
    assert (emulated - softmax_exact_reference(rows)).abs().max() < 1e-3


def test_layer_norm_over_the_variance_range_of_trained_vits():
    torch.manual_seed(0)
    rows = torch.randn(7, 256)
    rows = (rows - rows.mean(-1, keepdim=True)) / rows.std(-1, keepdim=True)
    scales = torch.tensor([8.8e-4, 1e-2, 0.1, 1.0, 8.0, 63.7, 120.0]).sqrt().unsqueeze(-1)
    x = rows * scales + 0.3
    out, rounds, _ = _secure(layer_norm_secure, x)
    err = (out - layer_norm_reference(x)).abs().amax(-1)
    assert err.max() < 5e-3, err  # both ends of the declared range included
    # square, g0 and r0, the first step, 2 steps of 2 products, normalise; plus their truncations
    # (one per step: g h stays at 2p bits), the sum of squares' sharing its opening with the guess's comparison
    assert rounds == _with_truncations(costs.Cost(1 + 1 + 1 + 2 * 2 + 1), layer_norm_secure, x)[0] == 15


def test_reveal_decodes_values_just_above_negative_integers():
    """CrypTen 0.4.1 decodes -2 + 2^-16 as -3 + 2^-16; the backend's decoder does not."""
    values = torch.tensor([-2 + 2**-16, -7 + 3 * 2**-16, -1.0, -0.5, 0.0, 2**-16, 3.25])
    out, _, _ = _secure(lambda x: x, values)
    assert torch.equal(out, values)
