"""The settings every party of a session shares, the providers they select, and
division by a public integer truncating the way the settings say.

Correlated randomness comes from :class:`~protocols.providers.DealerProvider` (prepared
offline, :mod:`secvit.runtime.dealer`) or, behind an explicit insecure flag, from party 0
(:class:`~protocols.providers.FirstPartyProvider`); dry runs record requests with
:class:`~protocols.providers.RecordingProvider`. Division of a share by a public integer
runs :func:`~protocols.truncation.exact_truncate` (one round, never fails in range)
unless the session chose ``local`` truncation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch


from ..dcf import CMP_BITS, at_least_opened, at_least_shares
from ..periodic import FourierSeries, periodic_shares
from ..providers import DealerProvider, FirstPartyProvider, RecordingProvider
from ..stationary import is_stationary, square_and_stationary_product, stationary_product
from ..truncation import (MAX_PRECISION, MIN_PRECISION, exact_truncate, integer_divisor, local_truncate, public_integer,
                          truncation_from_opened)
from ..backend import ArithmeticSharedTensor, FixedPointEncoder, MPCTensor, beaver, cfg, crypten, crypten_comm
from .streams import drawn_bytes

__all__ = ["DEALER", "MAX_PRECISION", "MPCSettings", "RECORDER", "configure", "dealer_provider",
           "random_bytes", "truncation_stats"]

Provider = Literal["dealer", "TFP"]
Truncation = Literal["exact", "local"]
Channels = Literal["tls", "plaintext"]
DEALER = DealerProvider()
RECORDER = RecordingProvider()
_TFP = FirstPartyProvider()
_CRYPTEN_PROVIDERS = vars(crypten.mpc)["__SUPPORTED_PROVIDERS"]
for _provider in (DEALER, RECORDER, _TFP):
    _CRYPTEN_PROVIDERS[_provider.NAME] = _provider
_PROVIDER_NAMES = {"dealer": DEALER.NAME, "TFP": _TFP.NAME}


@dataclass(frozen=True)
class MPCSettings:
    """Arithmetic and protocol settings every party must share.

    Attributes:
        precision_bits: Fractional bits ``f`` of the fixed-point encoding (ring 2^64).
            Exact truncation holds while products stay below ``2^(62 - 2f)`` in
            magnitude (2^30 at 16 bits, 2^22 at the maximum, 20); local truncation's
            failure rate grows as ``2^(2f - 64)`` per unit of magnitude, so it stops at 16.
        provider: ``dealer`` (a separate dealer process prepares every correlated value
            offline; it colludes with no party) or ``TFP`` (party 0 deals: party 0 can
            unmask everything; benchmarks only, behind ``--insecure-tfp``).
        truncation: ``exact`` (dealer's truncation pairs, one round, no failure in
            range) or ``local`` (CrypTen's: free, fails with probability |x| / 2^64 per
            element).
        channels: ``tls`` (TLS 1.3 with mutual certificate authentication between every
            pair of processes) or ``plaintext`` (plain TCP: anyone on the path reads the
            seeds and shares; the capture test's control, behind ``--insecure-plaintext-channels``).
        comm_stats: Count bytes and rounds on the communicator (CrypTen's verbose mode).
        timeout_s: Longest wait for any single message before a party gives up.
    """

    precision_bits: int = 16
    provider: Provider = "dealer"
    truncation: Truncation = "exact"
    channels: Channels = "tls"
    comm_stats: bool = True
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.provider not in _PROVIDER_NAMES:
            raise ValueError(f"provider must be one of {sorted(_PROVIDER_NAMES)}, got {self.provider!r}")
        if self.truncation not in MAX_PRECISION:
            raise ValueError(f"truncation must be one of {sorted(MAX_PRECISION)}, got {self.truncation!r}")
        if self.channels not in ("tls", "plaintext"):
            raise ValueError(f"channels must be tls or plaintext, got {self.channels!r}")
        top = MAX_PRECISION[self.truncation]
        if not MIN_PRECISION <= self.precision_bits <= top:
            raise ValueError(f"precision_bits must be in [{MIN_PRECISION}, {top}] with {self.truncation} truncation "
                             f"(beyond it the failure rate is not negligible), got {self.precision_bits}")

    @property
    def shared(self) -> dict[str, Any]:
        """The settings every process of a session must agree on."""
        return {"precision_bits": self.precision_bits, "provider": self.provider, "truncation": self.truncation,
                "channels": self.channels}

    @property
    def insecure(self) -> list[str]:
        """What makes this configuration insecure (empty when it is not)."""
        out = []
        if self.provider == "TFP":
            out.append("TFP: party 0 deals every correlated value and can unmask every opening")
        if self.truncation == "local":
            out.append("local truncation: each element fails with probability |x| / 2^64")
        if self.channels == "plaintext":
            out.append("plaintext channels: anyone on the path reads the seeds and every share")
        return out


_SESSION = {"settings": MPCSettings()}


def configure(settings: MPCSettings) -> None:
    """Apply ``settings`` to CrypTen's global config (call before joining a session)."""
    _SESSION["settings"] = settings
    cfg.encoder.precision_bits = settings.precision_bits
    cfg.mpc.provider = _PROVIDER_NAMES[settings.provider]
    cfg.communicator.verbose = settings.comm_stats


def random_bytes() -> int:
    """Bytes this party has drawn from its keyed streams so far (every stream)."""
    return drawn_bytes() + (DEALER.stream.drawn_bytes if DEALER.stream else 0)


def dealer_provider() -> DealerProvider:
    """The online provider of a session with a dealer."""
    return DEALER


truncation_stats = {"calls": 0, "elements": 0}
_crypten_div_ = ArithmeticSharedTensor.div_


def _div_(self: ArithmeticSharedTensor, y: Any) -> ArithmeticSharedTensor:
    """CrypTen's ``div_``, with division by a public integer truncating by the session's
    truncation mode (:mod:`~protocols.truncation`)."""
    d = integer_divisor(y)
    if d is None:
        return _crypten_div_(self, y)
    if d < 0:
        self.share = -self.share
        d = -d
    if d == 1:
        return self
    if _SESSION["settings"].truncation == "local":
        _count_truncation(self)
        self.share = local_truncate(self.share, d)
        return self
    return _exact_div_(self, d)


def _count_truncation(share: ArithmeticSharedTensor) -> None:
    truncation_stats["calls"] += 1
    truncation_stats["elements"] += share.share.numel()


def _exact_div_(self: ArithmeticSharedTensor, d: int) -> ArithmeticSharedTensor:
    """Division by a public integer ``d >= 2`` with the dealer's truncation pair, whatever
    the session's truncation mode."""
    _count_truncation(self)
    pair = crypten.mpc.get_default_provider().trunc_pair(self.share.size(), d)
    self.share = exact_truncate(self.share, d, self.rank, pair, crypten_comm.get().all_reduce)
    return self


ArithmeticSharedTensor.div_ = _div_


def _fourier(self: MPCTensor, series: FourierSeries) -> MPCTensor:
    """``f(x)`` (or ``x f(x)``) of a Fourier series: one opening and one exact truncation
    (:mod:`~protocols.periodic`)."""
    result = self.clone()
    share = result._tensor
    bits = round(math.log2(share.encoder.scale))
    r, masks = crypten.mpc.get_default_provider().trig_masks(share.size(), series.request_args(bits))
    share.share = periodic_shares(share.share, share.rank, series, bits, r, masks, crypten_comm.get().all_reduce)
    _exact_div_(share, series.divisor(bits))
    return result


MPCTensor.fourier = _fourier


def _thresholds(share: ArithmeticSharedTensor, thresholds: Sequence[float]) -> torch.Tensor:
    """Public thresholds encoded as ``share``'s values are (ring integers)."""
    return share.encoder.encode(torch.tensor(thresholds, dtype=torch.float64)).long().reshape(-1)


def _bits(like: MPCTensor, shares: torch.Tensor) -> MPCTensor:
    result = like.clone()
    result._tensor.share, result._tensor.encoder = shares, FixedPointEncoder(precision_bits=0)
    return result


def _at_least(self: MPCTensor, thresholds: Sequence[float]) -> MPCTensor:
    """``[x >= t]`` as integers (scale 1), stacked over the public thresholds ``t`` (shape
    ``(len(thresholds), *x.shape)``), for ``|x - t| < 2^62`` ring units: one opening of x
    and one key of the dealer per element (:mod:`~protocols.dcf`), where CrypTen's
    ``ge`` takes 8 rounds per comparison."""
    share = self._tensor
    r, seed, high, words = crypten.mpc.get_default_provider().sign_keys(share.size())
    bits = at_least_opened(share.share, share.rank, r, seed, high, words, _thresholds(share, thresholds),
                           crypten_comm.get().all_reduce)
    return _bits(self, bits)


def _truncate_wide_at_least(self: MPCTensor, thresholds: Sequence[float]) -> tuple[MPCTensor, MPCTensor]:
    """A value at twice the fractional bits (:meth:`mul_untruncated`) back at the
    session's (exact truncation) and :meth:`at_least` of the wide value, from one opening:
    the dealer makes the truncation pair and the comparison keys from one mask."""
    share = self._tensor
    bits = round(math.log2(share.encoder.scale)) // 2
    r, q, t, seed, high, words = crypten.mpc.get_default_provider().truncation_sign_keys(share.size(), 2**bits)
    c = crypten_comm.get().all_reduce(share.share + r + ((1 << CMP_BITS) if share.rank == 0 else 0))
    compared = at_least_shares(c, share.rank, seed, high, words, _thresholds(share, thresholds))
    result = self.clone()
    _count_truncation(result._tensor)
    result._tensor.share = truncation_from_opened(c, 2**bits, share.rank, q, t)
    result._tensor.encoder = FixedPointEncoder(precision_bits=bits)
    return result, _bits(self, compared)


MPCTensor.at_least, MPCTensor.truncate_wide_at_least = _at_least, _truncate_wide_at_least


_crypten_mul, _crypten_mul_ = ArithmeticSharedTensor.mul, ArithmeticSharedTensor.mul_


def _mul(self: ArithmeticSharedTensor, y: Any) -> ArithmeticSharedTensor:
    """CrypTen's ``mul``, with a public integral float multiplying the shares as an ``int``
    does: exact and local, where CrypTen encodes it and truncates (a round, exactly)."""
    return _crypten_mul(self, public_integer(y))


def _mul_(self: ArithmeticSharedTensor, y: Any) -> ArithmeticSharedTensor:
    return _crypten_mul_(self, public_integer(y))


ArithmeticSharedTensor.mul, ArithmeticSharedTensor.mul_ = _mul, _mul_


def _with_fixed_masks(op: str, crypten_product: Callable[..., Any]) -> Callable[..., Any]:
    """CrypTen's Beaver product ``op``, or the product by a weight with a fixed mask
    (:mod:`~protocols.stationary`: only the other operand is opened)."""

    def product(x: ArithmeticSharedTensor, y: Any, **kwargs: Any) -> ArithmeticSharedTensor:
        if is_stationary(y):
            return stationary_product(op, x, y, **kwargs)
        return crypten_product(x, y, **kwargs)

    return product


for _op in ("mul", "matmul", "conv2d"):
    setattr(beaver, _op, _with_fixed_masks(_op, getattr(beaver, _op)))


def _divided(product: Callable[..., ArithmeticSharedTensor], doc: str) -> Callable[..., MPCTensor]:
    """A fixed-point product whose truncation also divides by a public integer ``d`` (by
    d 2^f at once): one truncation round, where the product and ``.div(d)`` take two."""

    def method(self: MPCTensor, *args: Any) -> MPCTensor:
        *others, d = args
        result = self.clone()
        share = result._tensor
        share.share = product(share, *(y._tensor for y in others)).div_(share.encoder.scale * d).share
        return result

    method.__doc__ = doc
    return method


def _mul_untruncated(self: MPCTensor, y: MPCTensor) -> MPCTensor:
    """x y at twice the fractional bits: a Beaver product without its truncation (one
    opening); a product by it (:meth:`mul_wide`) truncates both at once."""
    result = self.clone()
    share = result._tensor
    share.share = beaver.mul(share, y._tensor).share
    share.encoder = FixedPointEncoder(precision_bits=2 * round(math.log2(self._tensor.encoder.scale)))
    return result


def _mul_wide(self: MPCTensor, wide: MPCTensor) -> MPCTensor:
    """x w for a secret ``w`` at more fractional bits than x (:meth:`mul_untruncated`),
    truncated by w's scale: one opening, one truncation, always the exact one (at three
    times the fractional bits, local truncation would fail on one element in 2^16 per unit
    of the result)."""
    result = self.clone()
    share = result._tensor
    share.share = beaver.mul(share, wide._tensor).share
    _exact_div_(share, int(wide._tensor.encoder.scale))
    return result


def _square_mul_untruncated(self: MPCTensor, weight: MPCTensor | None = None) -> tuple[MPCTensor, MPCTensor | None]:
    """x^2 and x w (broadcast; None without ``weight``) at twice the fractional bits: one
    opening of x where ``weight`` has a fixed mask
    (:func:`~protocols.stationary.square_and_stationary_product`), else a square and a
    Beaver product (two openings)."""
    if weight is not None and is_stationary(weight._tensor):
        square, product = square_and_stationary_product(self._tensor, weight._tensor)
    else:
        square = beaver.square(self._tensor)
        product = None if weight is None else beaver.mul(self._tensor, weight._tensor)
    wide = FixedPointEncoder(precision_bits=2 * round(math.log2(self._tensor.encoder.scale)))

    def result(share: ArithmeticSharedTensor | None) -> MPCTensor | None:
        if share is None:
            return None
        out = self.clone()
        out._tensor.share, out._tensor.encoder = share.share, wide
        return out

    return result(square), result(product)


MPCTensor.mul_untruncated, MPCTensor.mul_wide = _mul_untruncated, _mul_wide
MPCTensor.square_mul_untruncated = _square_mul_untruncated
MPCTensor.square_div = _divided(beaver.square, "x^2 / d for a public integer ``d``: one opening, one truncation.")
MPCTensor.matmul_div = _divided(beaver.matmul, "x @ y / d for a secret ``y`` and a public integer ``d``: one "
                                               "opening, one truncation.")
