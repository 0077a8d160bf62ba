"""Secure kernels against their plaintext references, with their round counts."""

from __future__ import annotations

import torch

from protocols import backend
from protocols.activation import gelu_erf_reference, gelu_erf_secure
from protocols.backend import crypten
from protocols.norm import layer_norm_reference, layer_norm_secure
from protocols.softmax import softmax_exact_reference, softmax_exact_secure

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


def test_gelu_erf_matches_series_and_gelu_in_range():
    x = torch.linspace(-4, 4, 801)
    out, rounds, nbytes = _secure(gelu_erf_secure, x)
    series = gelu_erf_reference(x, terms=8)
    assert (out - series).abs().max() < 2e-3
    assert (out - gelu_erf_reference(x)).abs().max() < 2e-2
    # t, three product layers of the power tree, z * series, x * (1 + erf)
    assert rounds == 6
    # elements opened per party: z^2 (n), power tree (2n + 3n + 5n), z * series (2n), x * (..) (2n)
    assert nbytes == 8 * 15 * 801


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
