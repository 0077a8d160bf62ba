"""Custody evidence from inside a party process.

:func:`tensor_fingerprints` hashes every plaintext floating-point tensor alive in the
process (found through the garbage collector), so a test can prove after the fact
that, e.g., no tensor equal to a model weight ever sat in the client's memory at the
audit points. Hashes are taken over float32 bytes, the form in which secvit holds
plaintext weights and images.
"""

from __future__ import annotations

import gc
import hashlib

import torch

__all__ = ["fingerprint", "tensor_fingerprints"]


def fingerprint(t: torch.Tensor) -> str:
    """SHA-1 of a tensor's shape and float32 contents."""
    data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(repr(tuple(t.shape)).encode() + data).hexdigest()


def tensor_fingerprints(min_numel: int = 16) -> set[str]:
    """Fingerprints of all live plaintext float tensors with at least ``min_numel`` elements."""
    found = set()
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, torch.Tensor) or obj.is_meta or not obj.is_floating_point():
                continue
        except ReferenceError:
            continue
        if obj.numel() >= min_numel:
            found.add(fingerprint(obj))
    return found
