"""Every registered protocol: secure vs emulation, emulation vs reference, counted cost vs measured."""

from __future__ import annotations

import functools

import pytest
import torch

import protocols
from protocols import backend
from protocols.backend import crypten
from protocols.fixed_point import FixedPoint
from protocols.registry import Protocol, register
from protocols.stationary import fix_masks

from .conftest import as_tensor, run_2pc

SHAPE = (2, 3, 17)
SECURE_VS_EMULATION = 2e-3  # 2-party truncation is off by one unit (1.5e-5) per product


def _inputs(p: Protocol) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lo, hi = p.valid_range
    x = torch.rand(SHAPE, generator=g) * (hi - lo) + lo
    if p.kind == "softmax":  # degenerate rows: all scores negative, all ~0
        x[0, 0] = -x[0, 0].abs() - 0.1
        x[0, 1] = torch.rand(SHAPE[-1], generator=g) * 1e-4
    args = {"x": x}
    if p.kind == "norm":
        args |= {"weight": torch.randn(SHAPE[-1], generator=g), "bias": torch.randn(SHAPE[-1], generator=g)}
    return args


@functools.lru_cache(maxsize=1)
def _secure_runs() -> dict[str, tuple]:
    """All protocols in one 2-party session (forking parties is the slow part)."""

    def party(rank: int):
        out = {}
        for p in protocols.protocols():
            inputs = _inputs(p)
            enc = {k: crypten.cryptensor(v, src=0) for k, v in inputs.items()}
            x = enc.pop("x")
            if "weight" in enc:  # a norm's weight: the owner's, masked once at load (the secure plan's way)
                fix_masks([enc["weight"]], 0, [inputs["weight"]] if rank == 0 else None)
            backend.reset_comm_stats()
            y = p.secure(x, **enc)
            stats = backend.comm_stats()
            out[p.name] = (y.get_plain_text(), stats["rounds"], stats["bytes"])
        return out

    return run_2pc(party)[0]


@pytest.mark.parametrize("name", protocols.names())
def test_protocol(name: str):
    p = protocols.get(name)
    args = _inputs(p)
    x = args.pop("x")
    secure, rounds, nbytes = _secure_runs()[name]
    emulated = p.emulate(x, FixedPoint(16), **args)
    reference = p.reference(x, **args)
    assert (as_tensor(secure).double() - emulated).abs().max() <= SECURE_VS_EMULATION
    assert (emulated - reference.double()).abs().max() <= p.tolerance
    counted = p.total_cost(SHAPE)
    assert (rounds, nbytes) == (counted.rounds, counted.bytes)


def test_reference_kernels_are_differentiable():
    for p in protocols.protocols():
        args = _inputs(p)
        x = args.pop("x").requires_grad_()
        p.reference(x, **args).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), p.name


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        register(protocols.get("softmax.exact"))


def test_unknown_protocol_names_the_known_ones():
    with pytest.raises(KeyError, match="softmax.2quad"):
        protocols.get("softmax.cubic")


def test_protocols_command_lists_every_entry(capsys):
    from secvit import cli

    assert cli.main(["protocols", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert all(f"`{name}`" in out for name in protocols.names())
