"""The one-round comparison: DCF keys against their formula, the sign test under MPC, and
an attack on the keys that succeeds only where the other party's root seed is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protocols import backend, costs
from protocols.backend import crypten
from protocols.dcf import CMP_BITS, at_least_opened, dcf_eval, dcf_keygen, sign_key_values
from protocols.preprocessing import dealer_corrections, party_draws
from protocols.requests import Request
from protocols.randomness import KeyedStream, new_key
from secvit.runtime.dealer import OfflinePhase

from .conftest import as_tensor, run_2pc

U64 = np.uint64


def _seeds(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 2**63, (count, 2)).astype(U64) * U64(2) + rng.integers(0, 2, (count, 2)).astype(U64)


@pytest.mark.parametrize("bits", [1, 5, 17, CMP_BITS])
def test_keys_share_beta_where_x_is_below_alpha(bits):
    """eval(0, k0, x) + eval(1, k1, x) = beta [x < alpha] at alpha, its neighbours, both
    ends of the domain and random points."""
    rng = np.random.default_rng(bits)
    count, top = 400, U64((1 << bits) - 1)
    alpha = rng.integers(0, 1 << bits, count, dtype=U64)
    alpha[:2] = (0, top)
    beta = rng.integers(-(2**63), 2**63 - 1, count, dtype=np.int64)
    s0, s1 = _seeds(rng, count), _seeds(rng, count)
    words = dcf_keygen(alpha, beta, bits, s0, s1)
    for x in (alpha, alpha - U64(1), alpha + U64(1), np.zeros(count, U64), np.full(count, top, U64),
              rng.integers(0, 1 << bits, count, dtype=U64)):
        x = x & top
        total = dcf_eval(0, s0, words, x, bits) + dcf_eval(1, s1, words, x, bits)
        assert np.array_equal(total, np.where(x < alpha, beta, 0))


THRESHOLDS = (0.0, 1.5, -3.25, 2.0**-16)


def _sign_test(dealer: bool, transport: str = "tls"):
    """[x >= t] for several public thresholds t: one opening, one key per element."""
    x = torch.cat([torch.randn(300) * 100, torch.tensor([0.0, -2.0**-16, 2.0**-16, 2.0**29, -(2.0**29), 1.5, -3.25])])

    def party(rank: int):
        offline = OfflinePhase(rank, dealer)
        secret = crypten.cryptensor(x if rank == 1 else torch.zeros(x.shape), src=1)
        offline.prepare(tuple(x.shape), lambda: secret.at_least(THRESHOLDS))
        backend.reset_comm_stats()
        bits = secret.at_least(THRESHOLDS)
        stats = backend.comm_stats()
        offline.finish()
        return bits.get_plain_text(dst=1), stats["rounds"], stats["bytes"]

    results = run_2pc(party, dealer=dealer, transport=transport)
    encoded = (x * 2**16).long()  # CrypTen's encoding
    expected_bits = torch.stack([encoded >= int(t * 2**16) for t in THRESHOLDS]).float()
    assert torch.equal(as_tensor(results[1][0]), expected_bits)
    expected = costs.sign(x.numel())
    assert all((r[1], r[2]) == (expected.rounds, expected.bytes) for r in results)


def test_sign_test_under_mpc_with_the_dealer():
    _sign_test(dealer=True)


@pytest.mark.parametrize("transport", ["tls", "gloo"])
def test_sign_test_under_mpc_with_party_0_dealing(transport):
    """Party 0 passes party 1 its key uncounted, on secvit's message link or, in a session
    on CrypTen's gloo communicator (the benchmarks' baseline transport), on its group."""
    _sign_test(dealer=False, transport=transport)


def _recover_x(opened: torch.Tensor, own_seed: torch.Tensor, words: torch.Tensor, guessed_seed: torch.Tensor) -> int:
    """Party 1's attack on one sign test: with a guess of party 0's root seed, evaluate
    both keys, find ``alpha = r mod 2^62`` by binary search on ``beta [y < alpha]`` (and
    ``r``'s bit 62 from beta's sign), then ``x = c - 2^62 - r`` (mod 2^63: x + 2^62 < 2^63)."""
    seeds = [guessed_seed.numpy().view(U64).reshape(1, 2), own_seed.numpy().view(U64).reshape(1, 2)]
    cw = words.numpy().reshape(1, -1)

    def f(y: int) -> int:
        point = np.array([y], U64)
        return int((dcf_eval(0, seeds[0], cw, point, CMP_BITS) + dcf_eval(1, seeds[1], cw, point, CMP_BITS))[0])

    beta = f(0)  # beta [0 < alpha]: beta unless alpha is 0
    lo, hi = 0, (1 << CMP_BITS) - 1  # the least y with f(y) == 0 is alpha
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if f(mid) == 0 else (mid + 1, hi)
    r_low = lo + ((1 << CMP_BITS) if beta == -1 else 0)
    x_offset = (int(opened) - r_low) % (1 << 63)
    return x_offset - (1 << CMP_BITS)


def test_a_party_that_knows_the_other_seed_recovers_x_and_secvits_party_does_not():
    """The attack recovers the compared secret exactly from one opening when the other
    party's root seed is known (the weak control: both seeds from one public value, as a
    dealer with a predictable generator would give); with secvit's keyed streams party 1
    only has its own seed, and the same attack with any guess recovers garbage."""
    x = torch.tensor([123456789])
    x0 = torch.tensor([-987654321987])

    def run(seed0: torch.Tensor, seed1: torch.Tensor, r: torch.Tensor, guess: torch.Tensor) -> int:
        high, words = sign_key_values(r, [seed0, seed1])
        opened = x + (1 << CMP_BITS) + r
        r1 = torch.tensor([5])
        shares = [at_least_opened(s, i, rs, sd, h, words, torch.zeros(1, dtype=torch.int64), lambda _: opened)[0]
                  for i, (s, rs, sd, h) in enumerate(((x0, r - r1, seed0, high), (x - x0, r1, seed1, 0 * high)))]
        assert int(shares[0] + shares[1]) == 1  # the test itself is right
        return _recover_x(opened[0], seed1, words[0], guess)

    weak_seed = torch.zeros(1, 2, dtype=torch.int64)
    r = torch.tensor([0x5A5A5A5A12345678])
    assert run(weak_seed, weak_seed, r, guess=weak_seed) == int(x)

    keys = [new_key(), new_key()]
    req = Request("sign", (1,))
    _, dealt = next(dealer_corrections([req], [KeyedStream(k) for k in keys], {}))
    own = party_draws(req, KeyedStream(keys[1]), None, lambda n: dealt[:n])
    opened = x + (1 << CMP_BITS) + KeyedStream(keys[0]).ring((1,)) + own["r"]  # r: party 0's first draw + party 1's
    guesses = (torch.zeros(2, dtype=torch.int64), own["seed"].reshape(2), KeyedStream(new_key()).ring((2,)))
    assert all(_recover_x(opened[0], own["seed"].reshape(2), own["cw"].reshape(-1), g) != int(x) for g in guesses)
