"""DCAL's global-local cross-attention (secvit.glca): the branch's output equals the top-R
form with the rollout's selection, the branch starts from the trained model's logits, and
it runs under MPC."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from secvit.checkpoint import load_model
from secvit.errors import UsageError
from secvit.glca import GLCAVisionTransformer, add_glca
from secvit.models import create_model
from secvit.profile.profiler import Profiler
from secvit.rewrite import load_policy, rewrite
from secvit.secure.plan import SecurePlan
from secvit.train import TrainConfig, train

from .conftest import as_tensor, run_2pc


def _attention_maps(model, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The last block's output and every block's attention probabilities (B, H, N, N)."""
    maps = []
    t = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    for block in model.blocks:
        a, h = block.attn, block.norm1(t)
        b, n, _ = h.shape
        q, k, _ = a.qkv(h).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        maps.append(((q * a.scale) @ k.transpose(-2, -1)).softmax(-1))
        t = block(t)
    return t, maps


def _rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """DCAL's accumulated attention prod_l (A_l / 2 + I / 2), head means, first block rightmost."""
    total = None
    for attn in maps:
        mixed = attn.mean(1) / 2 + torch.eye(attn.shape[-1]) / 2
        total = mixed if total is None else mixed @ total
    return total


def _glca_top_r(model, x: torch.Tensor, ratio: float) -> torch.Tensor:
    """DCAL's GLCA written out: the CLS token and the top-R patch tokens by the CLS row of the
    rollout are the queries, all tokens the keys and values; the branch's CLS logits."""
    tokens, maps = _attention_maps(model, x)
    patches = _rollout(maps)[:, 0, 1:]
    top = patches.topk(max(1, round(ratio * patches.shape[1])), 1).indices + 1
    chosen = torch.cat([torch.zeros_like(top[:, :1]), top], 1)
    block, attn = model.glca, model.glca.attn
    u = block.norm1(tokens)
    b, n, c = u.shape
    heads = lambda t, m: t.reshape(b, m, attn.num_heads, c // attn.num_heads).transpose(1, 2)  # noqa: E731
    local = torch.gather(u, 1, chosen[..., None].expand(-1, -1, c))
    q, k, v = heads(attn.q(local), local.shape[1]), heads(attn.k(u), n), heads(attn.v(u), n)
    rows = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1) @ v
    y = torch.gather(tokens, 1, chosen[..., None].expand(-1, -1, c))
    y = y + block.gamma_1 * attn.proj(rows.transpose(1, 2).reshape(b, -1, c))  # layer scales: 1 until trained
    y = y + block.gamma_2 * block.mlp(block.norm2(y))
    return model.glca_head(model.glca_norm(y)[:, 0])


def _trained_like(name: str = "vit_lite_1_2_16"):
    torch.manual_seed(0)
    model = add_glca(create_model(name).eval())
    with torch.no_grad():  # a branch that does something: random head, perturbed block
        model.glca_head.weight.normal_(0, 0.5)
        for p in model.glca.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
def test_the_branch_equals_dcals_top_r_form_whatever_the_selection(ratio):
    model = _trained_like()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        tokens, _ = _attention_maps(model, x)
        branch = model.glca_head(model.glca_norm(model.glca(tokens[:, 1:], tokens[:, :1]))[:, 0])
        assert (branch - _glca_top_r(model, x, ratio)).abs().max() < 1e-5
        sa = model.forward_head(model.norm(tokens))
        assert (model(x) - (sa + branch)).abs().max() < 1e-5


def test_added_branch_keeps_the_logits_and_copies_the_last_block():
    torch.manual_seed(1)
    plain = create_model("vit_lite_2_2_32").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = plain(x)
        model = add_glca(plain)
        assert (model(x) - before).abs().max() == 0
        last, dim = model.blocks[-1], model.embed_dim
        assert torch.equal(model.glca.attn.k.weight, last.attn.qkv.weight[dim:2 * dim])
        assert torch.equal(model.glca.mlp.fc2.weight, last.mlp.fc2.weight)
    rebuilt = create_model("vit_lite_2_2_32", glca=True)
    assert set(rebuilt.state_dict()) == set(model.state_dict())  # a checkpoint's model_args rebuild it
    assert F.cross_entropy(model(x), torch.tensor([0, 1])).requires_grad


def test_refuses_what_it_cannot_extend():
    model = add_glca(create_model("vit_lite_1_2_16"))
    with pytest.raises(UsageError, match="plain ViT"):
        add_glca(model)
    rewritten = rewrite(create_model("vit_lite_1_2_16"), load_policy("mpcformer"))[0]
    with pytest.raises(UsageError, match="unrewritten|plain ViT"):
        add_glca(rewritten)


def test_branch_runs_under_mpc_and_the_profiler_reports_its_cost():
    model = _trained_like()
    x = torch.randn(1, 3, 16, 16).clamp(-2, 2)
    with torch.no_grad():
        plain = model(x)

    def party(rank: int):
        plan = SecurePlan(model)
        plan.encrypt_weights(rank)
        encrypted = plan.encrypt_input(x if rank == 1 else None, rank, tuple(x.shape))
        profiler = Profiler(plan)
        with profiler.active():
            y = plan(encrypted, hook=profiler.hook)
        return y.get_plain_text(dst=1), profiler.to_list()

    (_, records), (logits, _) = run_2pc(party)
    assert (as_tensor(logits) - plain).abs().max() < 5e-2
    branch = [r for r in records if (r["module"] or "").startswith("glca")]
    assert {r["kind"] for r in branch} >= {"matmul", "softmax", "linear", "norm", "activation"}
    assert sum(r["rounds"] for r in branch) > 0 and sum(r["bytes"] for r in branch) > 0


def test_train_glca_writes_a_checkpoint_with_the_branch(tiny_ckpt, tmp_path):
    meta = train(TrainConfig(init=tiny_ckpt, epochs=1, warmup_epochs=1, glca=True), tmp_path / "glca")
    assert meta["model_args"]["glca"] is True and meta["train_config"]["glca"] is True
    model, _ = load_model(tmp_path / "glca")
    assert isinstance(model, GLCAVisionTransformer) and model.glca_head.weight.abs().sum() > 0  # trained
    assert meta["test_accuracy"] > 0.5  # one epoch from the trained model, branch included
