"""The op table: every module type with a secure form runs it (emulated) like its plaintext
forward, every function and method entry is well formed, and calls the secure engine
runs only as MPC modules are rewritten to them."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from secvit import ops
from secvit.mpc_modules import MPCActivation, MPCAttention, MPCNorm, MPCSoftmax
from secvit.ops import table
from secvit.rewrite import load_policy, rewrite
from secvit.secure.emulation import emulate
from timm.layers import Attention

def _with_statistics(norm: nn.BatchNorm1d) -> nn.BatchNorm1d:
    with torch.no_grad():
        norm.running_mean.normal_(0, 1)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.normal_(1, 0.2)
        norm.bias.normal_(0, 0.2)
    return norm.eval()


EXAMPLES = {  # one instance and input shape per module type with a secure form
    nn.Linear: (lambda: nn.Linear(6, 5), (2, 3, 6)),
    nn.Conv2d: (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 8, 8)),
    nn.BatchNorm2d: (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 4, 4)),
    nn.BatchNorm1d: (lambda: _with_statistics(nn.BatchNorm1d(4)), (6, 4)),  # LeViT's, over flattened tokens
    nn.AdaptiveAvgPool2d: (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    nn.ReLU: (nn.ReLU, (2, 7)),
    nn.Dropout: (nn.Dropout, (2, 7)),
    nn.Identity: (nn.Identity, (2, 7)),
    nn.Flatten: (nn.Flatten, (2, 3, 4)),
    MPCAttention: (lambda: MPCAttention(Attention(8, 2, qkv_bias=True), ["softmax.exact", "softmax.relu"]), (2, 5, 8)),
    MPCActivation: (lambda: MPCActivation("gelu.exact"), (2, 7)),
    MPCNorm: (lambda: MPCNorm(nn.LayerNorm(8), "norm.layer"), (2, 3, 8)),
    MPCSoftmax: (lambda: MPCSoftmax("softmax.exact"), (2, 3, 6)),
}
RUNNABLE = [t for t, op in table._MODULES.items() if op.secure is not None]


def test_every_runnable_module_type_has_an_example():
    assert set(RUNNABLE) == set(EXAMPLES), "add an example for each new module entry"


@pytest.mark.parametrize("module_type", RUNNABLE, ids=lambda t: t.__name__)
def test_module_entry_runs_like_its_plaintext_forward(module_type):
    torch.manual_seed(0)
    make, shape = EXAMPLES[module_type]
    model = nn.Sequential(make()).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        assert (emulate(model, x) - model(x)).abs().max() < 5e-3


@pytest.mark.parametrize("op", [*table._MODULES.values(), *table._FUNCTIONS.values(), *table._METHODS.values()],
                         ids=lambda op: op.name)
def test_entries_say_how_they_run_or_why_not(op):
    assert op.kind in ops.KINDS
    assert not (op.secure and op.refused)
    if op.refused:
        with pytest.raises(ops.UnsupportedOpError, match=op.name):
            op.check("here")


def test_a_name_registered_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        ops.register_module(nn.Linear, secure=lambda m, s, x: x)


class _Calls(nn.Module):
    """Softmax and GELU called as functions, a method and a module."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.soft = nn.Softmax(dim=-1)

    def forward(self, x):
        y = F.gelu(self.fc(x))
        return self.soft(y) + torch.softmax(y, dim=-1) + y.softmax(-1) + F.softmax(x, -1)


def test_calls_are_rewritten_to_mpc_modules_and_run():
    torch.manual_seed(0)
    model, x = _Calls().eval(), torch.randn(2, 3, 6)
    gm, report = rewrite(model, load_policy("relu"))
    calls = next(p for p in report.passes if p.name == "replace_calls")
    assert sorted(now for _, now in calls.changes) == ["gelu.relu"] + ["softmax.relu"] * 4
    assert not any(n.op != "call_module" and "softmax" in str(n.target) for n in gm.graph.nodes)
    with torch.no_grad():
        assert (emulate(gm, x) - gm(x)).abs().max() < 5e-3
        assert (emulate(model, x) - model(x)).abs().max() < 5e-3  # exact first: same as plaintext


def test_roll_chunk_and_casts_on_secrets_match_torch():
    from protocols.fixed_point import FixedPoint
    from secvit.ops.builtin import _chunk, _roll, _same_dtype

    x = torch.arange(2 * 5 * 4 * 3.0).view(2, 5, 4, 3)
    secret = FixedPoint(16).tensor(x)
    for shifts, dims in [((-3, -3), (1, 2)), ((3, 3), (1, 2)), (2, 1), ((7,), (2,))]:
        assert torch.equal(_roll(secret, shifts, dims).get_plain_text(), torch.roll(x, shifts, dims).double())
    for chunks, dim in [(2, -1), (3, 1), (2, 0)]:
        ours = [c.get_plain_text() for c in _chunk(secret, chunks, dim)]
        assert all(torch.equal(a, b.double()) for a, b in zip(ours, x.chunk(chunks, dim), strict=True))
    assert _same_dtype(secret, dtype=torch.float16) is secret
    with pytest.raises(ops.UnsupportedOpError, match="cannot be cast to torch.int64"):
        _same_dtype(secret, torch.int64)
