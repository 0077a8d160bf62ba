"""secvit's keyed randomness resists the MT19937 state-recovery attack that breaks CrypTen's.

An attacker who sees the 312 ring elements of one opened mask predicts every later draw
of CrypTen's ``torch.Generator`` (the control), but not of secvit's
:class:`~protocols.randomness.KeyedStream`.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

from protocols.randomness import KeyedStream, new_key
from tests.mt19937_attack import MIN_OBSERVED, recover_and_predict, temper, untemper

N_NEXT = 1728
EARLIER_DRAWS = 101


def _crypten_ring(generator: torch.Generator, n: int) -> torch.Tensor:
    """CrypTen 0.4.1's ``generate_random_ring_element`` call for the default 2**64 ring."""
    return torch.randint(-(2**63), 2**63 - 1, (n,), generator=generator, dtype=torch.long)


def test_temper_matches_python_mt19937() -> None:
    """Our tempering is CPython's, and untempering inverts it."""
    words = [random.getrandbits(32) for _ in range(624)]
    python_mt = random.Random()
    python_mt.setstate((3, tuple(words + [0]), None))
    assert [python_mt.getrandbits(32) for _ in range(624)] == [temper(w) for w in words]
    assert [untemper(temper(w)) for w in words] == words


def test_attack_predicts_crypten_generator() -> None:
    """Control: the attack predicts an unknown-seed torch.Generator exactly.

    Earlier draws put the observed window off the generator's 624-word twist blocks.
    """
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    _crypten_ring(generator, EARLIER_DRAWS)
    observed = _crypten_ring(generator, MIN_OBSERVED)
    actual = _crypten_ring(generator, N_NEXT)
    assert torch.equal(recover_and_predict(observed, N_NEXT), actual)


def test_attack_fails_on_keyed_stream() -> None:
    """The same attack on secvit's AES-CTR stream predicts nothing."""
    stream = KeyedStream(new_key())
    observed = stream.ring((MIN_OBSERVED,))
    actual = stream.ring((N_NEXT,))
    assert (recover_and_predict(observed, N_NEXT) == actual).sum().item() < 2


def test_keyed_stream_same_key_same_values() -> None:
    """Equal keys read in the same order give equal values."""
    key = new_key()
    first, second = KeyedStream(key), KeyedStream(key)
    assert torch.equal(first.ring((5,)), second.ring((5,)))
    assert torch.equal(first.bits((7,), 1), second.bits((7,), 1))


def test_keyed_stream_different_keys_differ() -> None:
    """Different keys give different streams."""
    assert not torch.equal(KeyedStream(new_key()).ring((8,)), KeyedStream(new_key()).ring((8,)))


def test_keyed_stream_bits_are_fair() -> None:
    """One-bit draws are 0 or 1, each about half the time."""
    bits = KeyedStream(new_key()).bits((10_000,), 1)
    assert set(bits.unique().tolist()) == {0, 1}
    assert bits.double().mean().item() == pytest.approx(0.5, abs=0.03)


def test_keyed_stream_ring_covers_both_signs() -> None:
    """Ring elements span negative and positive int64."""
    values = KeyedStream(new_key()).ring((1000,))
    assert (values < 0).any() and (values > 0).any()


def test_keyed_stream_rejects_wrong_key_length() -> None:
    """A key that is not 16 bytes is refused."""
    with pytest.raises(ValueError):
        KeyedStream(bytes(15))
