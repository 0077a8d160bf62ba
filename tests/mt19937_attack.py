"""State recovery against CrypTen's MT19937 ring-element draws.

CrypTen 0.4.1 draws every random ring element with::

    torch.randint(-(2**63), 2**63 - 1, size, generator=g, dtype=torch.long)

on a CPU ``torch.Generator`` (MT19937). Checked empirically against Python's
:mod:`random` (same MT19937 tempering) on torch 2.x: the range ``2**64 - 1`` is at
least ``2**32``, so each element takes two consecutive 32-bit outputs ``hi`` then
``lo`` and is ``-(2**63) + ((hi << 32) | lo) % (2**64 - 1)``.

The attack inverts that mapping, untempers the 624 outputs of 312 consecutive elements
into 624 consecutive words of the MT19937 state sequence, runs the generator's
recurrence forward and maps its tempered outputs back to ring elements. The modulo folds
the single 64-bit value ``2**64 - 1`` onto ``0``; an observed element in that spot
(probability ``2**-64`` each) yields a wrong word, which is accepted here.
"""

from __future__ import annotations

import torch

__all__ = ["MIN_OBSERVED", "recover_and_predict", "temper", "untemper"]

_N = 624
_M = 397
_MATRIX_A = 0x9908B0DF
_UPPER = 0x80000000
_LOWER = 0x7FFFFFFF
_MASK32 = 0xFFFFFFFF
_RING_LOW = -(2**63)
_RING_RANGE = 2**64 - 1

MIN_OBSERVED = _N // 2
"""Consecutive ring elements needed: two 32-bit outputs each, one full state."""


def temper(word: int) -> int:
    """MT19937's output tempering of one 32-bit state word.

    Args:
        word: A 32-bit state word.

    Returns:
        The 32-bit output the generator emits for ``word``.
    """
    word ^= word >> 11
    word ^= (word << 7) & 0x9D2C5680
    word ^= (word << 15) & 0xEFC60000
    return word ^ (word >> 18)


def untemper(output: int) -> int:
    """The inverse of :func:`temper`.

    Args:
        output: A 32-bit generator output.

    Returns:
        The state word that :func:`temper` maps to ``output``.
    """
    word = _undo_right_shift_xor(output, 18)
    word = _undo_left_shift_xor(word, 15, 0xEFC60000)
    word = _undo_left_shift_xor(word, 7, 0x9D2C5680)
    return _undo_right_shift_xor(word, 11)


def _undo_right_shift_xor(value: int, shift: int) -> int:
    """Solve ``value = x ^ (x >> shift)`` for ``x``, ``shift`` more top bits a round."""
    word = value
    for _ in range(32 // shift):
        word = value ^ (word >> shift)
    return word


def _undo_left_shift_xor(value: int, shift: int, mask: int) -> int:
    """Solve ``value = x ^ ((x << shift) & mask)`` for ``x``, ``shift`` more low bits a round."""
    word = value
    for _ in range(32 // shift):
        word = value ^ ((word << shift) & mask)
    return word


def _elements_to_outputs(elements: torch.Tensor) -> list[int]:
    """The 32-bit outputs (high word first) behind CrypTen ring elements."""
    outputs = []
    for element in elements.tolist():
        raw = (element - _RING_LOW) % 2**64
        outputs.extend((raw >> 32, raw & _MASK32))
    return outputs


def _outputs_to_elements(outputs: list[int]) -> torch.Tensor:
    """CrypTen ring elements from pairs of 32-bit outputs (high word first)."""
    elements = [
        _RING_LOW + ((hi << 32) | lo) % _RING_RANGE for hi, lo in zip(outputs[0::2], outputs[1::2])
    ]
    return torch.tensor(elements, dtype=torch.long)


def _extend_state(words: list[int], count: int) -> list[int]:
    """The next ``count`` words of the MT19937 state sequence after ``words``.

    ``x[k + 624] = x[k + 397] ^ twist(x[k], x[k + 1])`` holds for every ``k``, so any
    624 consecutive words determine the rest, whatever their offset in a twist block.
    """
    sequence = list(words[-_N:])
    for k in range(count):
        y = (sequence[k] & _UPPER) | (sequence[k + 1] & _LOWER)
        sequence.append(sequence[k + _M] ^ (y >> 1) ^ (_MATRIX_A if y & 1 else 0))
    return sequence[_N:]


def recover_and_predict(observed: torch.Tensor, n_next: int) -> torch.Tensor:
    """Predict the ring elements CrypTen's generator draws next.

    Args:
        observed: At least :data:`MIN_OBSERVED` consecutive int64 ring elements in draw
            order (row-major), as drawn by CrypTen's ``torch.randint`` call.
        n_next: How many following elements to predict.

    Returns:
        A 1-D int64 tensor of the ``n_next`` elements the generator draws next.

    Raises:
        ValueError: If ``observed`` is not int64 or holds too few elements.
    """
    if observed.dtype != torch.long or observed.numel() < MIN_OBSERVED:
        raise ValueError(
            f"need >= {MIN_OBSERVED} int64 ring elements, got {observed.numel()} of {observed.dtype}"
        )
    recent = observed.flatten()[-MIN_OBSERVED:]
    state = [untemper(output) for output in _elements_to_outputs(recent)]
    future = _extend_state(state, 2 * n_next)
    return _outputs_to_elements([temper(word) for word in future])
