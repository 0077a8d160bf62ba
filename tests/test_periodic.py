"""Fourier series through the dealer's trigonometric masks: right, two rounds, and the
opened value tells a party nothing (attacked against a mask of the low bits only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from protocols.activation import gelu_series
from protocols.backend import CPU, crypten
from protocols.fixed_point import FixedPoint
from protocols.periodic import FourierSeries, fit_series, trig_values
from secvit.runtime.dealer import OfflinePhase

from .conftest import as_tensor, run_2pc, spied_step

ArithmeticSharedTensor = crypten.mpc.primitives.ArithmeticSharedTensor

X = (torch.rand(4000, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 20
WAVE = FourierSeries(period_bits=3, first=1, step=1, cos=(0.5, 0.0), sin=(0.0, -0.25), constant=0.125)


def _evaluate(dealer: bool, low_bits_mask: bool = False):
    """GELU's series (x f(x)) and a plain series of party 1's X, the costs, and the first
    opening party 0 saw (the masked input ``c``). ``low_bits_mask``: the weak control, a
    first-party dealer whose mask is uniform on the m bits the series reads only."""

    def party(rank: int):
        offline = OfflinePhase(rank, dealer)
        provider = crypten.mpc.get_default_provider()
        if low_bits_mask:
            def weak(size, args):  # party 0 shares r and its masks by CrypTen's zero shares
                r = crypten.generators["local"][CPU].ring(size) & ((1 << args[0]) - 1)
                return tuple(ArithmeticSharedTensor(v, precision=0, src=0).share for v in (r, trig_values(r, *args)))
            provider.trig_masks = weak
        x = crypten.cryptensor(X if rank == 1 else torch.zeros(X.shape), src=1)
        outs, costs, first_opened = [], [], None
        for i, series in enumerate((gelu_series(), WAVE)):
            y, cost, opened = spied_step(offline, ("series", i), lambda: x.fourier(series))
            first_opened = opened[0] if first_opened is None else first_opened
            costs.append(cost)
            outs.append(y.get_plain_text())
        return outs, costs, first_opened

    return run_2pc(party, dealer=dealer)[0]


@pytest.fixture(scope="module")
def with_dealer():
    return _evaluate(dealer=True)


def test_series_under_mpc_match_their_references_in_two_rounds(with_dealer):
    (gelu, wave), costs, _ = with_dealer
    assert (as_tensor(gelu) - torch.nn.functional.gelu(X.double())).abs().max() < 3e-4
    assert (as_tensor(wave) - WAVE.reference(X)).abs().max() < 1e-4
    for cost in costs:
        assert (cost["rounds"], cost["bytes"]) == (2, 32 * X.numel())
    fp = FixedPoint()
    emulated = fp.tensor(X).fourier(WAVE).get_plain_text()
    assert (emulated - WAVE.reference(fp.encode(X))).abs().max() <= 2**-17 and fp.total_cost().rounds == 2


def _sign_guess_accuracy(opened: np.ndarray, modulus_bits: int) -> float:
    """The attack: read the opened c as X plus a mask centred on 2^(m-1) and guess x's sign."""
    guess = torch.from_numpy(opened) > (1 << (modulus_bits - 1))
    return float((guess == (X > 0)).double().mean())


def test_opened_input_reveals_nothing_a_low_bits_mask_would():
    modulus_bits = gelu_series().request_args(16)[0]
    (gelu, _), _, opened = _evaluate(dealer=False, low_bits_mask=True)
    assert (as_tensor(gelu) - torch.nn.functional.gelu(X.double())).abs().max() < 3e-4  # the control works
    assert _sign_guess_accuracy(opened, modulus_bits) > 0.6


def test_against_the_dealers_uniform_mask_the_attack_is_a_coin_toss(with_dealer):
    modulus_bits = gelu_series().request_args(16)[0]
    opened = torch.from_numpy(with_dealer[2])
    assert abs(_sign_guess_accuracy(with_dealer[2], modulus_bits) - 0.5) < 0.03
    assert abs(float((opened < 0).double().mean()) - 0.5) < 0.03  # the top bit is uniform too


def test_reference_is_the_series_formula():
    """Hand values of WAVE (period 8: t = 2 pi x / 8): f(x) = 1/8 + cos(t) / 2 - sin(2 t) / 4,
    and a series with harmonics 2, 5, 8, a linear term and one times x against the sum of
    a_k cos(k t) + b_k sin(k t) written out."""
    x = torch.tensor([0.0, 1.0, 2.0, 9.0], dtype=torch.float64)  # 9 = 1 + one period
    hand = [0.125 + 0.5, 0.125 + 0.5 * math.sqrt(0.5) - 0.25, 0.125, 0.125 + 0.5 * math.sqrt(0.5) - 0.25]
    assert torch.allclose(WAVE.reference(x), torch.tensor(hand, dtype=torch.float64), atol=1e-12)
    cos, sin = (0.3, -0.2, 0.05), (0.1, 0.4, -0.07)
    t = 2 * math.pi * torch.remainder(X.double(), 16.0) / 16.0
    terms = sum(a * torch.cos(k * t) + b * torch.sin(k * t) for k, a, b in zip((2, 5, 8), cos, sin))
    plain = FourierSeries(4, 2, 3, cos, sin, constant=0.5, linear=0.01)
    assert (plain.reference(X) - (0.5 + 0.01 * X.double() + terms)).abs().max() < 1e-12
    times_x = FourierSeries(4, 2, 3, cos, sin, constant=0.5, times_x=True)
    assert (times_x.reference(X) - X.double() * (0.5 + terms)).abs().max() < 1e-11


def test_odd_sine_fit_follows_a_saturating_function():
    series = fit_series(np.tanh, -12.0, 12.0, period_bits=5, count=16, step=2, terms=("sin",), constant=0.0)
    x = torch.linspace(-12, 12, 999, dtype=torch.float64)
    assert (series.reference(x) - torch.tanh(x)).abs().max() < 1e-3
    assert math.isclose(series.reference(torch.tensor([32.0 + 1.0]))[0], math.tanh(1.0), abs_tol=1e-3)  # period 32


def test_series_are_checked():
    with pytest.raises(ValueError, match="as many cos as sin"):
        FourierSeries(3, 1, 1, (0.1,), ())
    with pytest.raises(ValueError, match="harmonics start at 1"):
        FourierSeries(3, 0, 1, (0.1,), (0.2,))


@pytest.mark.parametrize("products", [False, True])
def test_the_dealers_masks_in_threads_equal_those_of_one(monkeypatch, products):
    """Large mask tables are filled by threads, one per part of the elements: the same
    integers as in one pass (per element, the same products in the same order)."""
    import protocols.periodic as periodic

    r = torch.randint(-2**62, 2**62, (3, 1000), generator=torch.Generator().manual_seed(3))
    args = (8 + 16, 20, 18, 1, 2, products)
    monkeypatch.setattr(periodic, "PARALLEL_ELEMENTS", 1 << 40)
    serial = trig_values(r, *args)
    monkeypatch.setattr(periodic, "PARALLEL_ELEMENTS", 1)
    threaded = trig_values(r, *args)
    assert threaded.shape == serial.shape == ((4 if products else 2) * 20, 3, 1000)
    assert torch.equal(threaded, serial)
