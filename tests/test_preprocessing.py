"""The dealer's correlated randomness, exact truncation, and the refusals around them."""

from __future__ import annotations

import math

import pytest
import torch

from protocols import backend
from protocols.backend import crypten
from protocols.dcf import at_least_opened
from protocols.preprocessing import correction_numel, dealer_corrections, dealt_numel, party_draws, udiv
from protocols.requests import WIDTH, Request, RequestError, decode, encode
from protocols.periodic import trig_values
from protocols.providers import PreprocessingError
from protocols.randomness import KeyedStream, new_key

from .conftest import as_tensor, run_2pc

REQUESTS = [
    Request("mul", (3, 4), (3, 4)),
    Request("mul", (2, 5), (2, 1)),
    Request("matmul", (2, 3, 4), (4, 5)),
    Request("conv2d", (1, 2, 6, 6), (3, 2, 3, 3), (2, 2, 1, 1, 1, 1, 1)),
    Request("square", (7,)),
    Request("binary", (4, 3), (4, 3)),
    Request("b2a", (9,)),
    Request("trunc", (11,), (), (1 << 16,)),
    Request("trunc", (5,), (), (65,)),
    Request("mask", (4, 5), (), (0,)),
    Request("mask", (3, 2, 3, 3), (), (1,)),
    Request("smatmul", (2, 3, 4), (4, 5), (0,)),
    Request("smatmul", (1, 4), (4, 5), (0,)),
    Request("sconv2d", (1, 2, 6, 6), (3, 2, 3, 3), (2, 2, 1, 1, 1, 1, 1, 1)),
    Request("mask", (5,), (), (2,)),
    Request("ssquare", (3, 5), (5,), (2,)),
    Request("tsign", (3, 5), (), (1 << 16,)),
    Request("trig", (2, 7), (), (22, 3, 18, 1, 2, 1)),
    Request("trig", (5,), (), (24, 2, 28, 1, 1, 0)),
    Request("sign", (3, 5)),
]


def _wrap(v: int) -> int:
    return (v + (1 << 63)) % (1 << 64) - (1 << 63)


def _open(shares: list[dict[str, torch.Tensor]], name: str, xor: bool = False) -> torch.Tensor:
    total = shares[0][name]
    for s in shares[1:]:
        total = total ^ s[name] if xor else total + s[name]
    return total


def test_parties_and_dealer_derive_the_promised_correlations():
    keys = [new_key(), new_key()]
    corrections = iter(dealer_corrections(REQUESTS, [KeyedStream(k) for k in keys], {}))
    streams = [KeyedStream(k) for k in keys]
    masks = {}
    for req in REQUESTS:
        flat, dealt = next(corrections)
        assert flat.numel() == correction_numel(req) and dealt.numel() == dealt_numel(req)

        def reader(values: torch.Tensor):
            offset = [0]

            def take(n: int) -> torch.Tensor:
                out = values[offset[0] : offset[0] + n]
                offset[0] += n
                return out
            return take

        take = reader(flat)
        shares = [party_draws(req, streams[0], take, take), party_draws(req, streams[1], None, reader(dealt))]
        if req.kind == "mask":
            masks[req.mask_id] = _open(shares, "b")
        elif req.kind in ("mul", "matmul", "conv2d", "smatmul", "sconv2d"):
            a, c = _open(shares, "a"), _open(shares, "c")
            b = _open(shares, "b") if req.kind == req.op else masks[req.mask_id]
            kwargs = req.conv_kwargs() if req.op == "conv2d" else {}
            assert torch.equal(c, getattr(torch, req.op)(a, b, **kwargs))
        elif req.kind == "square":
            assert torch.equal(_open(shares, "r2"), _open(shares, "r") ** 2)
        elif req.kind == "ssquare":  # one mask a for the square and the product by the fixed mask
            a = _open(shares, "a")
            assert torch.equal(_open(shares, "a2"), a * a) and torch.equal(_open(shares, "c"), a * masks[req.mask_id])
        elif req.kind == "binary":
            assert torch.equal(_open(shares, "c", True), _open(shares, "a", True) & _open(shares, "b", True))
        elif req.kind == "trig":
            r, t = _open(shares, "r"), _open(shares, "t")
            assert torch.equal(t, trig_values(r, *req.args))
            m, count, scale_bits, first, step, products = req.args
            angle = (r & ((1 << m) - 1)).double() * (2 * math.pi / 2**m) * (first + step)  # harmonic index 1
            rows = t.view(-1, count, r.numel(), 2)  # (C_k, S_k) per harmonic, then (R C_k, R S_k)
            c2, s2 = rows[0, 1, :, 0].view(r.shape), rows[0, 1, :, 1].view(r.shape)
            assert torch.allclose(c2.double() / 2**scale_bits, angle.cos(), atol=1e-5)
            assert torch.allclose(s2.double() / 2**scale_bits, angle.sin(), atol=1e-5)
            assert rows.shape[0] == (2 if products else 1)
            if products:
                assert torch.equal(rows[1, 1, :, 0].view(r.shape), r * c2)  # R C_2
        elif req.kind in ("sign", "tsign"):  # the keys and masks give [x >= 0] for any x with |x| < 2^62
            x = torch.tensor([[0, -1, 1, 2**61, -(2**61)], [2**62 - 1, 1 - 2**62, 5, -5, 123456789],
                              [-987654321, 42, -42, 2**40, -(2**40)]])
            x0 = torch.randint(-(2**63), 2**63 - 1, x.shape)
            r = _open(shares, "r")
            opened = x + r + (1 << 62)
            zero = torch.zeros(1, dtype=torch.int64)
            bits = [at_least_opened(xs, i, sh["r"], sh["seed"], sh["high"], sh["cw"], zero, lambda _: opened)[0]
                    for i, (xs, sh) in enumerate(zip((x0, x - x0), shares))]
            assert torch.equal(bits[0] + bits[1], (x >= 0).long())
            assert torch.equal(shares[0]["cw"], shares[1]["cw"])  # the correction words are common
            if req.kind == "tsign":  # and the truncation pair is made from the same mask r
                assert torch.equal(_open(shares, "q"), udiv(r, req.args[0]))
        elif req.kind == "b2a":
            bit = _open(shares, "bit", True)
            assert set(bit.tolist()) <= {0, 1} and torch.equal(_open(shares, "r"), bit)
        else:
            r, d = _open(shares, "r"), req.args[0]
            assert torch.equal(_open(shares, "q"), udiv(r, d))
            expected_t = [_wrap(int(v < 0) * ((1 << 64) // d)) for v in r.tolist()]
            assert _open(shares, "t").tolist() == expected_t


def test_each_share_alone_is_uniform_looking():
    """The receiver's corrections and the other party's stream carry no visible structure."""
    keys = [new_key(), new_key()]
    req = Request("square", (20000,))
    flat, _ = next(dealer_corrections([req], [KeyedStream(k) for k in keys], {}))
    for values in (flat, KeyedStream(keys[1]).ring((20000,))):
        assert abs(float((values < 0).double().mean()) - 0.5) < 0.02
        assert abs(float((values & 1).double().mean()) - 0.5) < 0.02


def test_unsigned_division_matches_python():
    x = torch.tensor([0, 1, -1, -(2**63), 2**63 - 1, 123456789, -987654321], dtype=torch.int64)
    for d in (2, 3, 65, 1 << 16, 1 << 32):
        expected = [_wrap((v % (1 << 64)) // d) for v in x.tolist()]
        assert udiv(x, d).tolist() == expected


def test_request_tables_round_trip_and_malformed_ones_are_refused():
    assert decode(encode(REQUESTS)) == REQUESTS
    table = encode(REQUESTS)
    bad_kind, bad_dims, bad_size, bad_div, bad_trig = (table.clone() for _ in range(5))
    bad_kind[0, 0] = 99
    bad_dims[0, 1] = 9
    bad_size[0, 2] = 1 << 40
    bad_div[7, -8] = 1
    bad_trig[-2, -7] = 5000  # harmonics
    for bad, message in ((bad_kind, "unknown request kind"), (bad_dims, "dims"), (bad_size, "elements"),
                         (bad_div, "divisor"), (bad_trig, "trig request")):
        with pytest.raises(RequestError, match=message):
            decode(bad)
    with pytest.raises(RequestError, match=f"\\(n, {WIDTH}\\)"):
        decode(table.float())


def test_a_triple_for_an_unknown_or_misshapen_fixed_mask_is_refused():
    keys = [new_key(), new_key()]
    for requests, message in (([Request("smatmul", (2, 4), (4, 5), (3,))], "no such mask"),
                              ([Request("mask", (4, 6), (), (0,)), Request("smatmul", (2, 4), (4, 5), (0,))],
                               "the mask has shape")):
        with pytest.raises(RequestError, match=message):
            list(dealer_corrections(requests, [KeyedStream(k) for k in keys], {}))


def test_exact_truncation_never_fails_where_local_truncation_does():
    """Products of magnitude ~5e8 (in range, below 2^30): CrypTen's local truncation
    corrupts about one element in eight (the weak control); exact truncation none."""
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(2000, generator=g) + 1) * 1.5e4
    b = (torch.rand(2000, generator=g) + 1) * 1.5e4 * torch.where(torch.rand(2000, generator=g) < 0.5, -1, 1)

    def party(rank: int):
        out = {}
        for mode in ("local", "exact"):
            backend.configure(backend.MPCSettings(provider="TFP", truncation=mode))
            x, y = crypten.cryptensor(a, src=0), crypten.cryptensor(b, src=1)
            out[mode] = (x * y).get_plain_text()
        return out

    result = run_2pc(party)[0]
    expected = a.double() * b.double()
    relative = {mode: (as_tensor(v).double() - expected).abs() / expected.abs() for mode, v in result.items()}
    assert (relative["local"] > 1e-3).sum() > 50  # the control: the attack surface is real
    assert relative["exact"].max() < 1e-4


def test_peers_cannot_send_pickled_objects():
    def party(rank: int):
        try:
            crypten.comm.get().broadcast_obj({"model_args": "anything"}, 0)
        except RuntimeError as e:
            return str(e)
        return "sent"

    assert all("pickled objects are refused" in r for r in run_2pc(party))


@pytest.mark.parametrize("settings", [{"precision_bits": 24}, {"precision_bits": 18, "truncation": "local"},
                                      {"provider": "TTP"}, {"truncation": "sometimes"}])
def test_settings_with_a_non_negligible_failure_rate_are_refused(settings):
    with pytest.raises(ValueError):
        backend.MPCSettings(**settings)


def test_online_requests_must_match_the_prepared_ones():
    provider = backend.dealer_provider()
    saved = provider.stream
    provider.stream = KeyedStream(new_key())
    try:
        provider.begin([Request("square", (3,))], torch.zeros(3, dtype=torch.int64))
        with pytest.raises(PreprocessingError, match="prepared"):
            provider.values(Request("square", (4,)))
    finally:
        provider.stream = saved
        provider.begin(None, None)
        provider.end()


def test_a_request_outside_a_prepared_step_is_refused():
    """Drawing from the stream for a step the dealer never saw would put the parties out of
    step with it: every later correlation would be wrong, silently."""
    provider = backend.dealer_provider()
    saved = provider.stream
    provider.stream = KeyedStream(new_key())
    try:
        with pytest.raises(PreprocessingError, match="outside a prepared step"):
            provider.fixed_mask((4, 5), 0)
    finally:
        provider.stream = saved


def test_a_prefetched_stream_reads_the_same_values():
    """Keystream computed ahead (the offline phase's prefetch) is read in order, whether a
    read falls inside it, straddles its end, or comes after a second prefetch."""
    key = new_key()
    plain, ahead = KeyedStream(key), KeyedStream(key)
    ahead.prefetch(8 * 10)
    sizes = [(3,), (4,), (5, 2), (7,)]  # 3 + 4 inside, 10 straddles the 80 prefetched bytes, 7 after
    for size in sizes[:3]:
        assert torch.equal(plain.ring(size), ahead.ring(size))
    ahead.prefetch(8 * 20)
    ahead.prefetch(8 * 5)  # less than already ahead: nothing more
    assert torch.equal(plain.ring(sizes[3]), ahead.ring(sizes[3]))
    assert torch.equal(plain.ring((30,)), ahead.ring((30,)))
    assert plain.drawn_bytes == ahead.drawn_bytes == 8 * (3 + 4 + 10 + 7 + 30)
