"""Distributed comparison functions: a comparison in one round with the dealer's keys.

A DCF key pair (Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar and Rathee, "Function
Secret Sharing for Mixed-Mode and Fixed-Point Secure Computation", Eurocrypt 2021, their
DCF construction) shares ``f(x) = beta [x < alpha]`` on ``n``-bit ``x``: each party
evaluates its key on a public ``x`` alone, ``eval(0, k0, x) + eval(1, k1, x) = f(x)`` mod
2^64, and either key alone is pseudo-random (it hides ``alpha`` and ``beta``).

The key is a walk down a binary tree along ``x``'s bits (most significant first): each
party holds a 128-bit seed and a control bit per node; one correction word per level
(a 128-bit seed correction, a ring element and two control-bit corrections) keeps the
parties' seeds equal off ``alpha``'s path (their outputs cancel there) and different on
it, and adds ``beta`` where ``x`` leaves the path to the left of ``alpha``. A key is one
seed per party (two ring elements) and ``4 n + 1`` ring elements common to both.

The pseudo-random generator is fixed-key AES-128 in Matyas-Meyer-Oseas form,
``G_j(s) = AES_K(s xor j) xor s xor j``: ``j = 0, 1`` the left and right child's seed
(its lowest bit the child's control bit), ``j = 2, 3`` the left and right child's ring
element. The key ``K`` is public (the construction's security rests on AES as a random
permutation, as in every fixed-key FSS implementation).

:func:`at_least_opened` turns it into the sign test of a shared ``x`` with
``|x| < 2^62`` (the exact truncation's range): ``c = x + 2^62 + r`` is opened (one
round, uniform), ``x + 2^62`` is in ``[0, 2^63)``, so ``x >= 0`` exactly when its bit 62
is set, which is ``c_62 xor r_62 xor [c mod 2^62 < r mod 2^62]``: the dealer's key for
``alpha = r mod 2^62`` and ``beta = 1 - 2 r_62`` and its shares of ``r_62`` give shares of
``r_62 xor [c mod 2^62 < alpha]``, and the public ``c_62`` flips them or not. For public
thresholds ``t``, ``c - t`` opens ``x - t`` with the same mask: one key per element,
evaluated at each threshold, compares ``x`` with all of them (a range guess's knots), and
the opening ``c`` is also that of an exact truncation by the same mask
(:func:`~.truncation.truncation_from_opened`), when the dealer makes its pair from ``r``. CrypTen's
comparison (arithmetic-to-binary conversion and a carry circuit) takes 8 rounds and 432
bytes per element; this one 1 round and 16 bytes, plus :data:`CW_WORDS` (249) ring
elements of correction words per element from the dealer, offline (the mask share, the
root seed and the share of ``r_62`` are stream draws). Evaluating a key costs 62 AES
blocks and about 4 µs per element on this project's CPUs, more local work than CrypTen's
circuit on whole activations: secvit uses it where rounds, not elements, dominate (the
range guesses of :mod:`.range_guess`).
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CMP_BITS", "CW_WORDS", "at_least_opened", "at_least_shares", "dcf_eval", "dcf_keygen", "sign_key_values"]

CMP_BITS = 62  # the sign test's key compares x + 2^62 + r mod 2^62 with r mod 2^62
CW_WORDS = 4 * CMP_BITS + 1  # ring elements of correction words per key
_FIXED_KEY = hashlib.sha256(b"secvit dcf prg").digest()[:16]
_LOW = np.uint64(1)
_U64 = np.uint64
_ECB = Cipher(algorithms.AES(_FIXED_KEY), modes.ECB()).encryptor()  # stateless: one for every call


def _mmo(blocks: np.ndarray) -> np.ndarray:
    """``AES_K(b) xor b`` for each 128-bit row of ``blocks`` (C-contiguous uint64, last
    dimension 2): one AES call into a buffer of the right size (allocating the output as
    ``bytes`` took ten times longer at 1 MB)."""
    out = np.empty(blocks.nbytes + 15, np.uint8)
    _ECB.update_into(memoryview(blocks).cast("B"), out)
    return out[: blocks.nbytes].view(_U64).reshape(blocks.shape) ^ blocks


def _child(seeds: np.ndarray, right: np.ndarray | np.uint64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The left (``right`` 0) or right (1) child of each 128-bit seed ((M, 2) uint64;
    ``right`` per row or one for all): its seed (lowest bit cleared), control bit and ring
    element, ``G_right`` and ``G_(right + 2)`` from one AES call."""
    blocks = np.empty((2, len(seeds), 2), _U64)
    np.bitwise_xor(seeds[:, 0], right, out=blocks[0, :, 0])
    blocks[0, :, 1] = seeds[:, 1]
    blocks[1] = blocks[0]
    blocks[1, :, 0] ^= _U64(2)  # the ring element's block of the same side
    out = _mmo(blocks)
    control = out[0, :, 0] & _LOW
    out[0, :, 0] &= ~_LOW
    return out[0], control, out[1, :, 0].view(np.int64)


def dcf_keygen(alpha: np.ndarray, beta: np.ndarray, n: int, seed0: np.ndarray, seed1: np.ndarray) -> np.ndarray:
    """Correction words of the keys for ``beta [x < alpha]`` (the dealer's side).

    Args:
        alpha: (N,) uint64, each below 2^n.
        beta: (N,) int64 payloads (ring elements).
        n: Input bits.
        seed0, seed1: (N, 2) uint64, the parties' root seeds (from their streams).

    Returns:
        (N, 4 n + 1) int64: per level the seed correction (2 words), the ring correction
        and the control-bit corrections (left + 2 right), then the final ring element.
    """
    count = len(alpha)
    seeds, controls = [seed0.copy(), seed1.copy()], [np.zeros(count, _U64), np.ones(count, _U64)]
    v_alpha = np.zeros(count, np.int64)
    words = np.empty((count, 4 * n + 1), np.int64)
    for level in range(n):
        a = (alpha >> _U64(n - 1 - level)) & _LOW
        keep_right = a.astype(bool)
        kids = [[_child(s, _U64(side)) for side in (0, 1)] for s in seeds]  # [party][side]
        pick = lambda party, keep, i: np.where(  # noqa: E731  (child field i of the kept or lost side)
            (keep_right if keep else ~keep_right).reshape(-1, *([1] * (kids[party][0][i].ndim - 1))),
            kids[party][1][i], kids[party][0][i])
        s_cw = pick(0, False, 0) ^ pick(1, False, 0)
        sign = 1 - 2 * controls[1].astype(np.int64)
        v_cw = sign * (pick(1, False, 2) - pick(0, False, 2) - v_alpha) + np.where(keep_right, sign * beta, 0)
        v_alpha = v_alpha - pick(1, True, 2) + pick(0, True, 2) + sign * v_cw
        t_left = kids[0][0][1] ^ kids[1][0][1] ^ a ^ _LOW
        t_right = kids[0][1][1] ^ kids[1][1][1] ^ a
        t_keep = np.where(keep_right, t_right, t_left)
        for party in (0, 1):
            on = controls[party].astype(bool)
            seeds[party] = np.where(on[:, None], pick(party, True, 0) ^ s_cw, pick(party, True, 0))
            controls[party] = pick(party, True, 1) ^ (controls[party] & t_keep)
        words[:, 4 * level : 4 * level + 2] = s_cw.view(np.int64)
        words[:, 4 * level + 2] = v_cw
        words[:, 4 * level + 3] = (t_left + 2 * t_right).view(np.int64)
    sign = 1 - 2 * controls[1].astype(np.int64)
    words[:, -1] = sign * (seeds[1][:, 1].view(np.int64) - seeds[0][:, 1].view(np.int64) - v_alpha)
    return words


def dcf_eval(party: int, seed: np.ndarray, words: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """This party's share of ``beta [x < alpha]`` at public points ``x`` ((N,) uint64,
    below 2^n), one key per point (``seed`` (N, 2) uint64, ``words`` (N, 4 n + 1) int64).
    Per level one AES call over two blocks per point (:func:`_child` on ``x``'s side);
    the corrections apply by masks, not by selection."""
    count = len(x)
    seeds, control = seed.copy(), np.full(count, party, _U64)
    total = np.zeros(count, np.int64)
    sides = (x[:, None] >> np.arange(n - 1, -1, -1, dtype=_U64)) & _LOW  # (N, n): x's bits, most significant first
    level_words = words[:, : 4 * n].reshape(count, n, 4)
    for level in range(n):
        right, cw = sides[:, level], level_words[:, level]
        child, child_control, value = _child(seeds, right)
        total += value
        total += cw[:, 2] * control.view(np.int64)
        seeds = child ^ (cw[:, :2].view(_U64) & (_U64(0) - control)[:, None])
        control = child_control ^ (control & (cw[:, 3].view(_U64) >> right))
        control &= _LOW
    total += seeds[:, 1].view(np.int64) + words[:, -1] * control.view(np.int64)
    return -total if party else total


def sign_key_values(r: torch.Tensor, seeds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The dealer's side of :func:`at_least_opened` for masks ``r`` (shape S): the
    plaintext ``r_62`` bits and the keys' correction words (S + (:data:`CW_WORDS`,)),
    from the two parties' root seeds (S + (2,))."""
    flat = r.reshape(-1).numpy().view(_U64)
    alpha = flat & _U64((1 << CMP_BITS) - 1)
    high = ((flat >> _U64(CMP_BITS)) & _LOW).view(np.int64)
    roots = [s.reshape(-1, 2).numpy().view(_U64) for s in seeds]
    words = dcf_keygen(alpha, 1 - 2 * high, CMP_BITS, *roots)
    return torch.from_numpy(high.copy()).view(r.shape), torch.from_numpy(words).view(*r.shape, CW_WORDS)


def at_least_shares(c: torch.Tensor, rank: int, seed: torch.Tensor, high: torch.Tensor, words: torch.Tensor,
                    thresholds: torch.Tensor) -> torch.Tensor:
    """This party's shares of ``[x >= t]`` (integers 0/1, shape ``(len(thresholds), *c.shape)``)
    for public ring integers ``t``, from the opened ``c = x + 2^62 + r`` (``r``: the keys'
    mask); each ``|x - t| < 2^62``. ``c - t`` is the opening of ``x - t`` with the same
    mask, so one key per element serves every threshold (evaluated at each point).

    Args:
        c: The opened sum (int64), shape S.
        rank: 0 or 1 (rank 0 adds the public terms).
        seed, high, words: This party's root seeds, share of ``r_62`` and the keys'
            correction words (:func:`sign_key_values`), shapes S + (2,), S, S + (CW_WORDS,).
        thresholds: (K,) int64.
    """
    k = thresholds.numel()
    shifted = (c.reshape(1, -1) - thresholds.view(-1, 1)).numpy().view(_U64)
    low = (shifted & _U64((1 << CMP_BITS) - 1)).reshape(-1)
    flip = torch.from_numpy(((shifted >> _U64(CMP_BITS)) & _LOW).astype(bool))
    seeds = np.tile(seed.reshape(-1, 2).numpy().view(_U64), (k, 1))
    borrow = dcf_eval(rank, seeds, np.tile(words.reshape(-1, CW_WORDS).numpy(), (k, 1)), low, CMP_BITS)
    u = torch.from_numpy(borrow).view(k, -1) + high.reshape(1, -1)  # r_62 xor [c - t mod 2^62 < r mod 2^62]
    return torch.where(flip, (1 if rank == 0 else 0) - u, u).view(k, *c.shape)


def at_least_opened(share: torch.Tensor, rank: int, r: torch.Tensor, seed: torch.Tensor, high: torch.Tensor,
                    words: torch.Tensor, thresholds: torch.Tensor, open_sum: Callable[[torch.Tensor], torch.Tensor]
                    ) -> torch.Tensor:
    """This party's shares of ``[x >= t]`` for each public threshold (:func:`at_least_shares`),
    opening ``c = x + 2^62 + r`` in one round.

    Args:
        share: This party's share of ``x`` (int64).
        rank: 0 or 1.
        r, seed, high, words: This party's share of the mask ``r`` and its key
            (:func:`sign_key_values`).
        thresholds: (K,) int64 ring integers.
        open_sum: Opens a shared tensor to both parties (one round).
    """
    c = open_sum(share + r + ((1 << CMP_BITS) if rank == 0 else 0))
    return at_least_shares(c, rank, seed, high, words, thresholds)
