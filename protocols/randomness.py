"""Keyed cryptographic randomness for every share, mask, triple and bit.

CrypTen draws its random ring elements with ``torch.randint`` on ``torch.Generator``
objects (MT19937): 624 consecutive 32-bit outputs (312 ring elements of one opened mask)
rebuild the generator's state and predict every later draw. secvit replaces every such
generator with a :class:`KeyedStream`: the AES-128 keystream in counter mode (AES-CTR,
``cryptography``'s OpenSSL binding) under a 128-bit key from ``os.urandom``. Predicting
its next block from any number of earlier ones is as hard as breaking AES.

Which key is known to whom (2 parties, dealer ``D``):

=========  ==========================================  =================================
stream     key known to                                used for
=========  ==========================================  =================================
``next``   this party and the next rank                pseudo-random zero shares (PRZS)
``prev``   this party and the previous rank            pseudo-random zero shares (PRZS)
``local``  this party alone                            local random values
``global`` every computing party                       public randomness
``dealer`` this party and the dealer                   this party's share of each
                                                       correlated value (:mod:`.dealer`)
=========  ==========================================  =================================

The keys themselves are agreed in one place, :func:`agree_party_keys` (and the dealer's in
:mod:`.dealer`): a fresh key per session and stream, sent once to the one peer who must
share it.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["KEY_BYTES", "KeyedStream", "key_from_tensor", "key_to_tensor", "new_key"]

KEY_BYTES = 16
_BLOCK = 16


def new_key() -> bytes:
    """A fresh 128-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def key_to_tensor(key: bytes) -> torch.Tensor:
    """A key as two int64 words (the form in which it crosses the communicator)."""
    return torch.from_numpy(np.frombuffer(key, dtype=np.int64).copy())


def key_from_tensor(words: torch.Tensor) -> bytes:
    """The inverse of :func:`key_to_tensor`; checks the size."""
    if words.dtype != torch.int64 or words.numel() != KEY_BYTES // 8:
        raise ValueError(f"a key is {KEY_BYTES // 8} int64 words, got {words.numel()} of {words.dtype}")
    return words.numpy().tobytes()


class KeyedStream:
    """An AES-128-CTR keystream read as ring elements or bits.

    Args:
        key: 16 secret bytes (:func:`new_key`).
        nonce: Initial counter block (16 bytes; all zero by default: every key is used
            for one stream only).

    Both ends of a stream that hold the same key and read the same sizes in the same
    order get the same values; nobody without the key can tell them from uniform.
    """

    def __init__(self, key: bytes, nonce: bytes = bytes(_BLOCK)):
        if len(key) != KEY_BYTES:
            raise ValueError(f"a stream key is {KEY_BYTES} bytes, got {len(key)}")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
        self._zeros = bytes(0)
        self._ahead = np.empty(0, dtype=np.uint8)  # keystream computed ahead (:meth:`prefetch`), not yet read
        self.drawn_bytes = 0

    def _encrypt_zeros(self, nbytes: int) -> np.ndarray:
        if len(self._zeros) < nbytes:
            self._zeros = bytes(max(nbytes, 2 * len(self._zeros)))
        out = np.empty(nbytes + _BLOCK - 1, dtype=np.uint8)
        self._encryptor.update_into(memoryview(self._zeros)[:nbytes], out)
        return out[:nbytes]

    def prefetch(self, nbytes: int) -> None:
        """Compute the next ``nbytes`` of the keystream now (an offline phase does, so that
        the online phase only reads them); reads return the same values either way."""
        extra = nbytes - len(self._ahead)
        if extra > 0:
            self._ahead = np.concatenate([self._ahead, self._encrypt_zeros(extra)]) if len(self._ahead) else \
                self._encrypt_zeros(extra)

    def _keystream(self, nbytes: int) -> np.ndarray:
        self.drawn_bytes += nbytes
        if not len(self._ahead):
            return self._encrypt_zeros(nbytes)
        out, self._ahead = self._ahead[:nbytes], self._ahead[nbytes:]
        return out if len(out) == nbytes else np.concatenate([out, self._encrypt_zeros(nbytes - len(out))])

    def ring(self, size: Sequence[int] | torch.Size) -> torch.Tensor:
        """Uniform elements of Z_{2^64} as int64 (two's complement) of shape ``size``."""
        shape = tuple(int(s) for s in size)
        n = math.prod(shape)
        return torch.from_numpy(self._keystream(8 * n).view(np.int64)).view(shape)

    def bits(self, size: Sequence[int] | torch.Size, bitlength: int = 64) -> torch.Tensor:
        """Uniform ``bitlength``-bit values (0 <= v < 2^bitlength) as int64."""
        values = self.ring(size)
        if bitlength >= 64:
            return values
        return values & ((1 << bitlength) - 1)
