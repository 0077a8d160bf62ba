"""The single import point of CrypTen, with the fixes secvit applies to it.

PyPI ``crypten==0.4.1`` imports ``torch.onnx._internal.registration`` (for its ONNX model
converter), a module that current torch no longer has. The MPC core never uses it, so a
stand-in module with a ``registry`` attribute is registered under that name before
``import crypten``. ``crypten.nn.from_pytorch`` stays unusable; secvit does not use it.

CrypTen 0.4.1's ``FixedPointEncoder.decode`` floor-divides negative values by
``scale - 1``: a revealed value within ~|x| / 2^16 above a negative integer (e.g. an
encoding of -1.99998) decodes one too low (-2.99998). :func:`_exact_decode` replaces it.

Security fixes, all applied here (the one place that touches CrypTen's internals):

* **Randomness**: every ``torch.Generator`` CrypTen draws shares, masks, triples or bits
  from is replaced by a :class:`~protocols.randomness.KeyedStream` (AES-128-CTR); a
  generator that is not one raises. Keys are agreed by :func:`_agree_party_keys` (run by
  ``crypten.init`` too) and, with a dealer, :func:`_receive_dealer_key`.
* **Dealer**: correlated randomness comes from :class:`~protocols.providers.DealerProvider`
  (prepared offline, :mod:`secvit.runtime.dealer`) or, behind an explicit insecure flag,
  from party 0 (:class:`~protocols.providers.FirstPartyProvider`).
* **Truncation**: division of a share by a public integer runs
  :func:`~protocols.truncation.exact_truncate` (one round, never fails in range) unless
  the session chose ``local`` truncation.
* **One message per opening**: between two parties, ``all_reduce`` (an opening) is one
  simultaneous exchange and ``reduce`` (a reveal to one party) one message, instead of
  gloo's two dependent steps; bytes and rounds are counted as before.
* **No pickles**: the communicator's ``send_obj``/``recv_obj``/``broadcast_obj`` raise;
  peers exchange fixed-size integer tensors only.

Everything else in secvit gets crypten from here::

    from protocols.backend import crypten
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import torch
import torch.distributed as dist


def _install_onnx_registration_standin() -> None:
    name = "torch.onnx._internal.registration"
    try:
        __import__(name)
    except ImportError:
        standin = types.ModuleType(name)
        standin.registry = None  # crypten only reads this attribute at import time
        sys.modules[name] = standin


_install_onnx_registration_standin()

import crypten  # noqa: E402  (must follow the stand-in)
import crypten.common.rng as crypten_rng  # noqa: E402
import crypten.communicator as crypten_comm  # noqa: E402
import crypten.mpc.primitives.arithmetic as crypten_arithmetic  # noqa: E402
import crypten.mpc.primitives.binary as crypten_binary  # noqa: E402
import crypten.mpc.provider.tfp_provider as crypten_tfp  # noqa: E402
import crypten.mpc.provider.ttp_provider as crypten_ttp  # noqa: E402
from crypten.communicator.communicator import _logging  # noqa: E402
from crypten.communicator.distributed_communicator import DistributedCommunicator  # noqa: E402
from crypten.config import cfg  # noqa: E402
from crypten.encoder import FixedPointEncoder  # noqa: E402
from crypten.mpc.primitives.arithmetic import ArithmeticSharedTensor  # noqa: E402

from .preprocessing import Request  # noqa: E402
from .providers import DealerProvider, FirstPartyProvider, RecordingProvider, ZeroStream  # noqa: E402
from .randomness import KeyedStream, key_from_tensor, key_to_tensor, new_key  # noqa: E402
from .truncation import exact_truncate, local_truncate  # noqa: E402

__all__ = [
    "DEALER_COMMANDS",
    "MPCSettings",
    "barrier",
    "gather_all",
    "cfg",
    "comm_stats",
    "configure",
    "crypten",
    "dealer_provider",
    "dealer_rank",
    "dry_run",
    "init",
    "join_as_dealer",
    "random_bytes",
    "recv_message",
    "reset_comm_stats",
    "send_message",
    "set_threads",
    "shutdown",
    "stop_dealer",
    "truncation_stats",
    "truncations_of",
]



def _exact_decode(self: FixedPointEncoder, tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Fixed-point integers to floats: floor quotient and remainder by the scale."""
    if tensor is None or self._scale == 1:
        return None if tensor is None else tensor.data
    quotient = tensor.div(self._scale, rounding_mode="floor")
    return (quotient.float() + (tensor - quotient * self._scale).float() / self._scale).data


FixedPointEncoder.decode = _exact_decode

# ---------------------------------------------------------------- randomness

_STREAMS = ("prev", "next", "local", "global")
_CPU = torch.device("cpu")


def _stream_of(generator: Any, kwargs: dict[str, Any]) -> Any:
    if generator is None:
        generator = crypten.generators["local"].get(torch.device(kwargs.get("device") or "cpu"))
    if not isinstance(generator, (KeyedStream, ZeroStream)):
        raise TypeError(f"secvit draws shares from keyed streams only, got {type(generator).__name__} "
                        "(was the session initialised by protocols.backend?)")
    return generator


def _ring_element(size, ring_size: int = 2**64, generator: Any = None, **kwargs: Any) -> torch.Tensor:
    if ring_size != 2**64:
        raise ValueError(f"only the ring 2^64 is supported, got {ring_size}")
    return _stream_of(generator, kwargs).ring(size)


def _kbit_tensor(size, bitlength: int | None = None, generator: Any = None, **kwargs: Any) -> torch.Tensor:
    return _stream_of(generator, kwargs).bits(size, 64 if bitlength is None else bitlength)


for _module in (crypten_rng, crypten_arithmetic, crypten_binary, crypten_tfp, crypten_ttp):
    for _name, _fn in (("generate_random_ring_element", _ring_element), ("generate_kbit_random_tensor", _kbit_tensor)):
        if hasattr(_module, _name):
            setattr(_module, _name, _fn)


def _install_streams(keys: dict[str, bytes]) -> None:
    for name in _STREAMS:
        crypten.generators[name] = {_CPU: KeyedStream(keys[name])}


def _agree_party_keys() -> None:
    """Fresh keys for this session: ``next`` goes to the next rank (it is that rank's
    ``prev``), ``global`` comes from rank 0, ``local`` stays here. Sent in clear over
    the communicator until authenticated channels exist ([2 of 7]): this is the one
    place to secure."""
    comm = crypten_comm.get()
    world_size, rank = comm.get_world_size(), comm.get_rank()
    keys = {"next": new_key(), "local": new_key()}
    if world_size >= 2:
        prev = torch.zeros(2, dtype=torch.int64)
        sent = comm.isend(key_to_tensor(keys["next"]), (rank + 1) % world_size)
        received = comm.irecv(prev, src=(rank - 1) % world_size)
        sent.wait()
        received.wait()
        keys["prev"] = key_from_tensor(prev)
    else:
        keys["prev"] = keys["next"]
    keys["global"] = key_from_tensor(comm.broadcast(key_to_tensor(new_key()), 0))
    _install_streams(keys)


crypten._setup_prng = _agree_party_keys  # crypten.init() agrees keyed streams, not MT19937 seeds


# ---------------------------------------------------------------- no pickles from peers

def _no_objects(self, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError("secvit parties exchange fixed-size integer tensors only; pickled objects are refused")


for _name in ("send_obj", "recv_obj", "broadcast_obj"):
    setattr(DistributedCommunicator, _name, _no_objects)


# ---------------------------------------------------------------- one message per opening

_COMBINE = {dist.ReduceOp.SUM: torch.add, dist.ReduceOp.BXOR: torch.bitwise_xor}
_crypten_all_reduce, _crypten_reduce = DistributedCommunicator.all_reduce, DistributedCommunicator.reduce


def _two_party(self: DistributedCommunicator, op: Any) -> bool:
    return self.get_world_size() == 2 and op in _COMBINE


def _exchange(self: DistributedCommunicator, tensors: list[torch.Tensor], op: Any, dst: int | None) -> list[torch.Tensor]:
    """Two parties open ``tensors`` in one simultaneous exchange (each sends its shares once
    and receives the peer's), or, with ``dst``, the other party sends to ``dst`` alone."""
    peer = 1 - self.get_rank()
    mine = [t.contiguous() for t in tensors]
    theirs = [torch.empty_like(t) for t in mine]
    sending = dst is None or dst == peer
    receiving = dst is None or dst == self.get_rank()
    works = [dist.isend(t, peer, group=self.main_group) for t in mine] if sending else []
    works += [dist.irecv(t, peer, group=self.main_group) for t in theirs] if receiving else []
    for work in works:
        work.wait()
    return [_COMBINE[op](a, b) for a, b in zip(mine, theirs)] if receiving else mine


@_logging
def all_reduce(self: DistributedCommunicator, input: Any, op: Any = dist.ReduceOp.SUM, batched: bool = False) -> Any:
    """CrypTen's all_reduce; between two parties one exchange instead of gloo's two steps."""
    if not _two_party(self, op):
        return _crypten_all_reduce.__wrapped__(self, input, op=op, batched=batched)
    out = _exchange(self, list(input) if batched else [input], op, None)
    return out if batched else out[0]


@_logging
def reduce(self: DistributedCommunicator, input: Any, dst: int, op: Any = dist.ReduceOp.SUM, batched: bool = False) -> Any:
    """CrypTen's reduce; between two parties the peer's one message to ``dst``."""
    if not _two_party(self, op):
        return _crypten_reduce.__wrapped__(self, input, dst, op=op, batched=batched)
    out = _exchange(self, list(input) if batched else [input], op, dst)
    return out if batched else out[0]


DistributedCommunicator.all_reduce, DistributedCommunicator.reduce = all_reduce, reduce


# ---------------------------------------------------------------- providers and settings

Provider = Literal["dealer", "TFP"]
Truncation = Literal["exact", "local"]
_DEALER = DealerProvider()
_RECORDER = RecordingProvider()
_TFP = FirstPartyProvider()
_CRYPTEN_PROVIDERS = vars(crypten.mpc)["__SUPPORTED_PROVIDERS"]
for _provider in (_DEALER, _RECORDER, _TFP):
    _CRYPTEN_PROVIDERS[_provider.NAME] = _provider
_PROVIDER_NAMES = {"dealer": _DEALER.NAME, "TFP": _TFP.NAME}
MAX_PRECISION = {"exact": 20, "local": 16}


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
        comm_stats: Count bytes and rounds on the communicator (CrypTen's verbose mode).
        timeout_s: Longest wait for any single message before a party gives up.
    """

    precision_bits: int = 16
    provider: Provider = "dealer"
    truncation: Truncation = "exact"
    comm_stats: bool = True
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.provider not in _PROVIDER_NAMES:
            raise ValueError(f"provider must be one of {sorted(_PROVIDER_NAMES)}, got {self.provider!r}")
        if self.truncation not in MAX_PRECISION:
            raise ValueError(f"truncation must be one of {sorted(MAX_PRECISION)}, got {self.truncation!r}")
        top = MAX_PRECISION[self.truncation]
        if not 8 <= self.precision_bits <= top:
            raise ValueError(f"precision_bits must be in [8, {top}] with {self.truncation} truncation "
                             f"(beyond it the failure rate is not negligible), got {self.precision_bits}")

    @property
    def shared(self) -> dict[str, Any]:
        """The settings every process of a session must agree on."""
        return {"precision_bits": self.precision_bits, "provider": self.provider, "truncation": self.truncation}

    @property
    def insecure(self) -> list[str]:
        """What makes this configuration insecure (empty when it is not)."""
        out = []
        if self.provider == "TFP":
            out.append("TFP: party 0 deals every correlated value and can unmask every opening")
        if self.truncation == "local":
            out.append("local truncation: each element fails with probability |x| / 2^64")
        return out


_SESSION = {"settings": MPCSettings()}


def configure(settings: MPCSettings) -> None:
    """Apply ``settings`` to CrypTen's global config (call before :func:`init`)."""
    _SESSION["settings"] = settings
    cfg.encoder.precision_bits = settings.precision_bits
    cfg.mpc.provider = _PROVIDER_NAMES[settings.provider]
    cfg.communicator.verbose = settings.comm_stats


def random_bytes() -> int:
    """Bytes this party has drawn from its keyed streams so far (every stream)."""
    streams = [s for name in _STREAMS for s in crypten.generators[name].values()]
    return sum(s.drawn_bytes for s in [*streams, *([_DEALER.stream] if _DEALER.stream else [])])


def dealer_provider() -> DealerProvider:
    """The online provider of a session with a dealer."""
    return _DEALER


# ---------------------------------------------------------------- truncation

truncation_stats = {"calls": 0, "elements": 0}
_crypten_div_ = ArithmeticSharedTensor.div_


def _integer_divisor(y: Any) -> int | None:
    if isinstance(y, float) and int(y) == y:
        return int(y)
    if isinstance(y, int):
        return y
    if torch.is_tensor(y) and y.numel() > 0 and not (y.is_floating_point() and (y.frac() != 0).any()):
        values = y.flatten().unique()
        if values.numel() != 1:
            raise ValueError("a share divides by one public integer; got a tensor of different integers")
        return int(values[0])
    return None


def _div_(self: ArithmeticSharedTensor, y: Any) -> ArithmeticSharedTensor:
    """CrypTen's ``div_``, with division by a public integer truncating by the session's
    truncation mode (:mod:`~protocols.truncation`)."""
    d = _integer_divisor(y)
    if d is None:
        return _crypten_div_(self, y)
    if d < 0:
        self.share = -self.share
        d = -d
    if d == 1:
        return self
    truncation_stats["calls"] += 1
    truncation_stats["elements"] += self.share.numel()
    if _SESSION["settings"].truncation == "local":
        self.share = local_truncate(self.share, d)
    else:
        pair = crypten.mpc.get_default_provider().trunc_pair(self.share.size(), d)
        self.share = exact_truncate(self.share, d, self.rank, pair, crypten_comm.get().all_reduce)
    return self


ArithmeticSharedTensor.div_ = _div_


# ---------------------------------------------------------------- sessions

def _environment(rank: int, world_size: int, rendezvous: str) -> None:
    os.environ.update(
        {"DISTRIBUTED_BACKEND": "gloo", "RENDEZVOUS": rendezvous, "WORLD_SIZE": str(world_size), "RANK": str(rank)}
    )


@contextlib.contextmanager
def _bounded_waits(timeout_s: float) -> Iterator[None]:
    """CrypTen calls init_process_group without a timeout (gloo's default: 30 minutes);
    bound every wait so that a lost party is noticed."""
    original = dist.init_process_group
    dist.init_process_group = functools.partial(original, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield
    finally:
        dist.init_process_group = original


_DEALER_LINK: dict[str, Any] = {}
_DEALER_WAIT = datetime.timedelta(days=1)  # between batches; a lost peer is the watchdog's to find
DEALER_COMMANDS = {"prepare": 1, "stop": 2}


def _join(settings: MPCSettings, rank: int, world_size: int, rendezvous: str) -> None:
    configure(settings)
    _environment(rank, world_size, rendezvous)
    dealer = settings.provider == "dealer"
    with _bounded_waits(settings.timeout_s):
        crypten_comm._init(use_threads=False, init_ttp=dealer)
    comm = crypten_comm.get()
    comm.ttp_initialized = False  # CrypTen would pickle a "terminate" message to its own TTP server
    if dealer:
        _DEALER_LINK.update(group=dist.new_group(list(range(world_size + 1)), timeout=_DEALER_WAIT),
                            rank=world_size)


def init(settings: MPCSettings, rank: int, world_size: int, rendezvous: str) -> None:
    """Join the parties' process group, agree keyed streams, and (with a dealer) receive
    this party's stream key from the dealer.

    Args:
        settings: Settings shared by all parties.
        rank: This process's rank in [0, world_size).
        world_size: Number of computing parties (the dealer is not counted).
        rendezvous: ``tcp://HOST:PORT`` (rank 0 listens) or ``file:///path``.
    """
    _join(settings, rank, world_size, rendezvous)
    _agree_party_keys()
    if settings.provider == "dealer":
        key = torch.zeros(2, dtype=torch.int64)
        dist.recv(key, src=_DEALER_LINK["rank"], group=_DEALER_LINK["group"])
        _DEALER.stream = KeyedStream(key_from_tensor(key))


def join_as_dealer(settings: MPCSettings, world_size: int, rendezvous: str) -> list[KeyedStream]:
    """Join as the dealer (rank ``world_size``), send each party a fresh stream key, and
    return the dealer's copies of the parties' streams."""
    _join(settings, world_size, world_size, rendezvous)
    keys = [new_key() for _ in range(world_size)]
    for rank, key in enumerate(keys):
        dist.send(key_to_tensor(key), dst=rank, group=_DEALER_LINK["group"])
    return [KeyedStream(k) for k in keys]


def send_message(command: str, data: torch.Tensor, dst: int) -> int:
    """Send ``(command, flat int64 data)`` on the dealer's link; returns the bytes sent."""
    flat = data.reshape(-1).to(torch.int64).contiguous()
    dist.send(torch.tensor([DEALER_COMMANDS[command], flat.numel()]), dst=dst, group=_DEALER_LINK["group"])
    if flat.numel():
        dist.send(flat, dst=dst, group=_DEALER_LINK["group"])
    return 8 * (2 + flat.numel())


def recv_message(src: int, max_elements: int) -> tuple[str, torch.Tensor]:
    """Receive one :func:`send_message` message, refusing unknown commands and sizes
    above ``max_elements``."""
    header = torch.zeros(2, dtype=torch.int64)
    dist.recv(header, src=src, group=_DEALER_LINK["group"])
    code, n = header.tolist()
    names = {v: k for k, v in DEALER_COMMANDS.items()}
    if code not in names or not 0 <= n <= max_elements:
        raise RuntimeError(f"malformed dealer message from rank {src}: command {code}, {n} elements")
    data = torch.zeros(n, dtype=torch.int64)
    if n:
        dist.recv(data, src=src, group=_DEALER_LINK["group"])
    return names[code], data


def dealer_rank() -> int | None:
    """The dealer's rank in this session (None without a dealer)."""
    return _DEALER_LINK.get("rank")


def stop_dealer() -> None:
    """Rank 0 tells the dealer (if any) that the session is over."""
    if _DEALER_LINK and dist.get_rank() == 0:
        send_message("stop", torch.zeros(0, dtype=torch.int64), _DEALER_LINK["rank"])


def shutdown() -> None:
    """Leave the session (every process, after rank 0's :func:`stop_dealer`)."""
    if crypten_comm.is_initialized():
        _DEALER_LINK.clear()
        crypten.uninit()


# ---------------------------------------------------------------- dry runs

class _DryCommunicator:
    """Answers every collective with this party's own tensor, sends nothing."""

    def __init__(self, real: DistributedCommunicator | None):
        self.rank, self.world_size = (real.get_rank(), real.get_world_size()) if real is not None else (0, 2)

    def get_rank(self) -> int:
        return self.rank

    def get_world_size(self) -> int:
        return self.world_size

    @staticmethod
    def all_reduce(input: Any, op: Any = None, batched: bool = False) -> Any:
        return [t.clone() for t in input] if batched else input.clone()

    def reduce(self, input: Any, dst: int, op: Any = None, batched: bool = False) -> Any:
        return self.all_reduce(input, batched=batched)

    @staticmethod
    def broadcast(input: Any, src: int, group: Any = None, batched: bool = False) -> Any:
        return input

    def gather(self, tensor: torch.Tensor, dst: int) -> list[torch.Tensor]:
        return [tensor.clone() for _ in range(self.world_size)]

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return self.gather(tensor, 0)

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"communicator call {name!r} during a dry run")


@contextlib.contextmanager
def dry_run() -> Iterator[list[Request]]:
    """Run secure code without communication or randomness and collect the correlated
    values it asks for (yields the list, filled when the block ends). Values computed
    inside are meaningless; only the sequence of requests is. Works outside a session too
    (as rank 0 of two)."""
    get, streams, provider = crypten_comm.get, dict(crypten.generators), cfg.mpc.provider
    dry = _DryCommunicator(DistributedCommunicator.instance if crypten_comm.is_initialized() else None)
    crypten_comm.get = lambda: dry
    crypten.generators.update({name: {_CPU: ZeroStream()} for name in _STREAMS})
    cfg.mpc.provider = _RECORDER.NAME
    _RECORDER.requests = []
    counted = dict(truncation_stats)
    try:
        yield _RECORDER.requests
    finally:
        crypten_comm.get = get
        crypten.generators.update(streams)
        cfg.mpc.provider = provider
        truncation_stats.update(counted)


def gather_all(table: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``table`` (same shape and dtype), by rank: the computing parties
    and, in a session with a dealer, the dealer (uncounted: session set-up)."""
    group = _DEALER_LINK["group"] if _DEALER_LINK else crypten_comm.get().main_group
    out = [torch.zeros_like(table) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, table, group=group)
    return out


def barrier() -> None:
    """Wait for every computing party (uncounted: it is not part of any protocol)."""
    dist.barrier(group=crypten_comm.get().main_group)


def truncations_of(fn: Callable[[], Any]) -> tuple[int, int]:
    """How many truncations ``fn`` runs and how many elements they truncate (run dry)."""
    with dry_run():
        before = dict(truncation_stats)
        fn()
        return truncation_stats["calls"] - before["calls"], truncation_stats["elements"] - before["elements"]


def comm_stats() -> dict[str, float]:
    """This party's communication so far: ``rounds``, ``bytes`` and ``time`` (seconds)."""
    stats = crypten_comm.get().get_communication_stats()
    return {"rounds": int(stats["rounds"]), "bytes": int(stats["bytes"]), "time": float(stats["time"])}


def reset_comm_stats() -> None:
    """Zero this party's communication counters."""
    crypten_comm.get().reset_communication_stats()


def set_threads(n: int) -> None:
    """Limit torch's intra-op threads of this party process."""
    torch.set_num_threads(n)
