"""CrypTen tuple providers of secvit: the dealer's (online), a recorder (dry run), and an
insecure trusted-first-party one (benchmarks).

Every provider turns CrypTen's calls into :class:`~.preprocessing.Request` objects, so
one table of requests describes a forward pass whichever provider serves it:

* :class:`DealerProvider` serves the online phase: each party reads its shares from its
  keyed stream with the dealer; the receiver (rank 0) takes the corrections the dealer
  prepared for exactly these requests, checked one by one.
* :class:`RecordingProvider` records the requests of a dry run and returns zero shares.
* :class:`FirstPartyProvider` (``--insecure-tfp``): party 0 computes every value as the
  dealer would and party 1 reads its shares from a stream the two share; party 0 can
  therefore unmask every opening. Benchmarks only.
"""

from __future__ import annotations

from typing import Any

import torch

from .preprocessing import dealt_numel, first_party_values, party_draws, public_product, stream_bytes
from .requests import STATIONARY, Request
from .randomness import KeyedStream

__all__ = ["DealerProvider", "FirstPartyProvider", "PreprocessingError", "RecordingProvider", "UnsupportedRequestError",
           "ZeroStream"]

PREFETCH_BYTES = 1 << 30
_FIXED_MASK_KINDS = (*STATIONARY, "ssquare")  # requests whose c is a (*) B for a fixed mask B  # the most keystream a party computes ahead of a forward pass


class PreprocessingError(RuntimeError):
    """The online phase asked for other values than those prepared."""


class UnsupportedRequestError(RuntimeError):
    """CrypTen asked for a correlated value secvit does not provide (no secvit kernel uses it)."""


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_args(kwargs: dict[str, Any]) -> tuple[int, ...]:
    return (*_pair(kwargs.get("stride", 1)), *_pair(kwargs.get("padding", 0)), *_pair(kwargs.get("dilation", 1)),
            int(kwargs.get("groups", 1)))


class _RequestProvider:
    """CrypTen's TupleProvider interface on top of :meth:`values` (a request's shares),
    and the fixed masks of :mod:`.stationary`."""

    NAME = "secvit"
    RECORDS_ONLY = False  # a dry run's provider: its values are zeros

    def __init__(self) -> None:
        self._public: dict[int, torch.Tensor] = {}  # F = W - B of each fixed mask, by id

    def values(self, req: Request) -> dict[str, torch.Tensor]:
        """This party's shares of ``req``'s values (each provider says where they come from),
        with a stationary product's public part folded in (:meth:`_fold_public`)."""
        raise UnsupportedRequestError(f"{type(self).__name__} serves no requests")

    def publish_mask(self, mask_id: int, f: torch.Tensor) -> None:
        """Record ``F = W - B``, opened for fixed mask ``mask_id`` (:func:`~.stationary.fix_masks`)."""
        self._public[mask_id] = f

    def _public_known(self, req: Request) -> bool:
        """Whether :meth:`_fold_public` can fold ``req`` now (its mask's F is opened, or it needs none)."""
        return req.kind not in _FIXED_MASK_KINDS or req.mask_id in self._public

    def _fold_public(self, req: Request, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A stationary request's ``c`` plus ``a (*) F`` for its mask's public ``F``: the part
        of ``X (*) W = E (*) W + [A] (*) F + [C]`` that needs no input, so that a provider
        that prepares its values ahead (the dealer's) takes it out of the online phase.
        Other requests' values unchanged."""
        if req.kind not in _FIXED_MASK_KINDS or self.RECORDS_ONLY:
            return values
        f = self._public.get(req.mask_id)
        if f is None:
            raise PreprocessingError(f"{req.kind} request for fixed mask {req.mask_id}, whose F = W - B was never "
                                     "opened in this session (fix_masks)")
        return values | {"c": values["c"] + public_product(req, values["a"], f)}

    @staticmethod
    def _arithmetic(t: torch.Tensor):
        from .backend import crypten

        return crypten.mpc.primitives.ArithmeticSharedTensor.from_shares(t, precision=0)

    @staticmethod
    def _binary(t: torch.Tensor):
        from .backend import crypten

        return crypten.mpc.primitives.BinarySharedTensor.from_shares(t)

    def generate_additive_triple(self, size0, size1, op, device=None, *args, **kwargs):
        if op not in ("mul", "matmul", "conv2d") or args:
            raise UnsupportedRequestError(f"no Beaver triples for {op!r}")
        req = Request(op, tuple(size0), tuple(size1), _conv_args(kwargs) if op == "conv2d" else ())
        v = self.values(req)
        return self._arithmetic(v["a"]), self._arithmetic(v["b"]), self._arithmetic(v["c"])

    def square(self, size, device=None):
        v = self.values(Request("square", tuple(size)))
        return self._arithmetic(v["r"]), self._arithmetic(v["r2"])

    def generate_binary_triple(self, size0, size1, device=None):
        v = self.values(Request("binary", tuple(size0), tuple(size1)))
        return self._binary(v["a"]), self._binary(v["b"]), self._binary(v["c"])

    def B2A_rng(self, size, device=None):
        v = self.values(Request("b2a", tuple(size)))
        return self._arithmetic(v["r"]), self._binary(v["bit"])

    def trunc_pair(self, size, divisor: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This party's shares of ``(r, q, t)`` (:mod:`.truncation`)."""
        v = self.values(Request("trunc", tuple(size), (), (divisor,)))
        return v["r"], v["q"], v["t"]

    def trig_masks(self, size, args: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """This party's shares of a uniform ``R`` and its trigonometric masks
        (:func:`~.periodic.trig_values` with ``args``)."""
        v = self.values(Request("trig", tuple(size), (), tuple(args)))
        return v["r"], v["t"]

    def sign_keys(self, size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This party's share of a uniform mask ``r``, its comparison key's root seeds, its
        share of ``r``'s bit 62, and the keys' correction words (:mod:`.dcf`)."""
        v = self.values(Request("sign", tuple(size)))
        return v["r"], v["seed"], v["high"], v["cw"]

    def truncation_sign_keys(self, size, divisor: int) -> tuple[torch.Tensor, ...]:
        """:meth:`sign_keys` and the truncation pair ``(q, t)`` for ``divisor`` of the same
        mask ``r``: ``(r, q, t, seed, high, cw)``."""
        v = self.values(Request("tsign", tuple(size), (), (divisor,)))
        return v["r"], v["q"], v["t"], v["seed"], v["high"], v["cw"]

    def fixed_mask(self, size, mask_id: int) -> torch.Tensor:
        """This party's share of a new fixed mask ``B`` (:mod:`.stationary`)."""
        return self.values(Request("mask", tuple(size), (), (mask_id,)))["b"]

    def stationary_triple(self, size0, size1, op: str, mask_id: int, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """This party's shares of a fresh ``a`` and of ``c = a (*) B`` for fixed mask ``mask_id``."""
        if op not in ("mul", "matmul", "conv2d"):
            raise UnsupportedRequestError(f"no stationary triples for {op!r}")
        args = (*_conv_args(kwargs), mask_id) if op == "conv2d" else (mask_id,)
        v = self.values(Request("s" + op, tuple(size0), tuple(size1), args))
        return v["a"], v["c"]

    def square_stationary_triple(self, size0, size1, mask_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This party's shares of a fresh ``a``, of ``a^2`` and of ``c = a * B`` for fixed
        mask ``mask_id`` (broadcast)."""
        v = self.values(Request("ssquare", tuple(size0), tuple(size1), (mask_id,)))
        return v["a"], v["a2"], v["c"]

    def wrap_rng(self, size, device=None):
        raise UnsupportedRequestError("secvit truncates with truncation pairs; CrypTen's wrap protocol is not used")

    def generate_trig_triple(self, size, device=None):
        raise UnsupportedRequestError("no trigonometric triples")

    def generate_one_hot_pair(self, size, length, device=None):
        raise UnsupportedRequestError("no one-hot pairs")


class ZeroStream:
    """A stream of zeros, read like a :class:`~.randomness.KeyedStream` (dry runs only)."""

    drawn_bytes = 0

    @staticmethod
    def zeros(n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.int64)

    @staticmethod
    def ring(size) -> torch.Tensor:
        return torch.zeros(tuple(size), dtype=torch.int64)

    @staticmethod
    def bits(size, bitlength: int = 64) -> torch.Tensor:
        return torch.zeros(tuple(size), dtype=torch.int64)


class RecordingProvider(_RequestProvider):
    """Records the requests of a dry run; every share it returns is zero."""

    NAME = "secvit-record"
    RECORDS_ONLY = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def values(self, req: Request) -> dict[str, torch.Tensor]:
        self.requests.append(req)
        return party_draws(req, ZeroStream(), None, ZeroStream.zeros)


_DEALT_VALUES = "dealt values (comparison keys)"  # what a party receives whole, in errors


class _Cursor:
    """Consecutive slices of a flat tensor of preprocessing (corrections or dealt values)."""

    def __init__(self, values: torch.Tensor | None, what: str):
        self.values, self.offset, self.what = values, 0, what

    def take(self, n: int) -> torch.Tensor:
        if self.values is None or self.offset + n > self.values.numel():
            raise PreprocessingError(f"the online phase used more {self.what} than the dealer sent")
        out = self.values[self.offset : self.offset + n]
        self.offset += n
        return out

    @property
    def used(self) -> bool:
        """Whether every value was taken (or there were none)."""
        return self.values is None or self.offset == self.values.numel()


class DealerProvider(_RequestProvider):
    """The online phase with a dealer.

    :meth:`begin` loads one forward pass's preprocessing: every party has its stream
    (set once, at key agreement) and the prepared requests, the receiver also their
    corrections; each party computes the stream it will read ahead (up to
    :data:`PREFETCH_BYTES`: AES-CTR of 426 MB took 0.08 s of the client's online time in
    a ViT-Lite forward pass). :meth:`end` checks that the pass used exactly what was
    prepared.
    """

    NAME = "secvit-dealer"

    def __init__(self) -> None:
        super().__init__()
        self.stream: KeyedStream | None = None
        self._load(None, None, None)
        self._active = False

    def _load(self, requests: list[Request] | None, corrections: torch.Tensor | None,
              dealt: torch.Tensor | None) -> None:
        self._expected, self._next = requests, 0
        self._corrections = _Cursor(corrections, "corrections")
        self._dealt = _Cursor(dealt, _DEALT_VALUES)
        self._ready: list[dict[str, torch.Tensor]] = []  # the values of self._expected, prepared at begin

    def begin(self, requests: list[Request] | None, corrections: torch.Tensor | None,
              dealt: torch.Tensor | None = None) -> None:
        """Start a forward pass (``requests``: the prepared ones, None where not known;
        ``corrections``: the receiver's, else None; ``dealt``: the values the dealer sent
        every other party, where the requests have any)."""
        self._load(requests, corrections, dealt)
        self._active = True
        if requests is not None and self.stream is not None:
            ahead = stream_bytes(requests, corrections is not None)
            self.stream.prefetch(min(PREFETCH_BYTES, ahead))
            if ahead <= PREFETCH_BYTES and all(self._public_known(r) for r in requests):
                self._ready = [self._fold_public(r, self._draws(r)) for r in requests]  # before the input exists

    def values(self, req: Request) -> dict[str, torch.Tensor]:
        if self.stream is None:
            raise PreprocessingError("no dealer stream: the session was not initialised with a dealer")
        if not self._active:
            raise PreprocessingError(f"{req.kind} request outside a prepared step: the dealer would not know it "
                                     "(run the step through OfflinePhase.prepare or OfflinePhase.run)")
        if self._expected is not None:
            if self._next >= len(self._expected) or self._expected[self._next] != req:
                prepared = self._expected[self._next] if self._next < len(self._expected) else "nothing"
                raise PreprocessingError(f"online request {self._next} is {req}; the dealer prepared {prepared}")
            self._next += 1
            if self._ready:
                return self._ready[self._next - 1]
        return self._fold_public(req, self._draws(req))

    def _draws(self, req: Request) -> dict[str, torch.Tensor]:
        if self._corrections.values is None:
            return party_draws(req, self.stream, None, self._dealt.take)
        return party_draws(req, self.stream, self._corrections.take, self._corrections.take)

    def end(self) -> None:
        """Check that every prepared request, correction and dealt value was used."""
        used = self._corrections.used and self._dealt.used
        if self._expected is not None and (self._next != len(self._expected) or not used):
            raise PreprocessingError(f"the online phase used {self._next} of {len(self._expected)} prepared requests")
        self._load(None, None, None)
        self._active = False


class FirstPartyProvider(_RequestProvider):
    """Party 0 deals (insecure against party 0; two parties): it computes every value as
    the dealer does (:func:`~.preprocessing.first_party_values`), taking its own shares
    from its ``local`` stream and party 1's from the stream the two share (party 0's
    ``next``, party 1's ``prev``), from which party 1 reads them as it would read its
    stream with a dealer. Party 1 computes nothing; the values it must receive whole
    (comparison keys' correction words) come on the message link, uncounted, as a
    dealer's offline message would."""

    NAME = "secvit-tfp"

    def __init__(self) -> None:
        super().__init__()
        self._masks: dict[int, torch.Tensor] = {}  # party 0's plaintext fixed masks, by id

    def values(self, req: Request) -> dict[str, torch.Tensor]:
        from .backend import CPU, crypten, recv_message, send_message

        comm = crypten.comm.get()
        if comm.get_world_size() != 2:
            raise UnsupportedRequestError(f"party 0 deals for two parties, not {comm.get_world_size()}")
        if comm.get_rank() == 1:
            n = dealt_numel(req)
            dealt = _Cursor(recv_message(0, n)[1] if n else None, _DEALT_VALUES)
            return self._fold_public(req, party_draws(req, crypten.generators["prev"][CPU], None, dealt.take))
        shares, dealt = first_party_values(req, crypten.generators["local"][CPU], crypten.generators["next"][CPU],
                                           self._masks)
        if dealt.numel():
            send_message("keys", dealt, 1)
        return self._fold_public(req, shares)
