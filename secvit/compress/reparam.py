"""Depth by structural reparameterization: K parallel branches trained into one block.

A :class:`BranchBlock` holds K pre-norm ViT blocks side by side. Each branch's LayerNorm
affine is folded into its first linear layer (exact: (x_hat g + b) W^T + c =
x_hat (W diag g)^T + (W b + c)), so all branches share x_hat = LN(x). Per branch k,
the pre-activations h_k (the qkv projection; the first MLP layer) are blended with
lambda in [0, 1]:

    h~_k = (1 - lambda) h_k + lambda mean_j h_j

and the block is x + sum_k MHSA_k(x_hat), then x + sum_k FFN_k(x_hat). Training moves
lambda from 0 to 1 (:meth:`BranchBlock.schedule`); at lambda = 1 every branch computes
the same q, k, v and hidden activation, so the block *is* one ViT block with
W_qkv = mean_k W_qkv^k, W_O = sum_k W_O^k, W1 = mean_k W1^k, W2 = sum_k W2^k (and the
biases alike): :meth:`BranchBlock.merge`, exact up to float rounding. A teacher's
L_t blocks split into L contiguous groups give an L-block student whose branches start
from the teacher's weights (:func:`branch_model`). For MPC, fewer blocks means fewer
rounds (each block's softmax, GELU and LayerNorms run in sequence).

The merge equations are derived here, not copied from the 2025 paper whose equations the
project's notes mark unconfirmed; the test proves merged == lambda=1 branch model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from ..errors import UsageError

__all__ = ["BranchBlock", "branch_model", "depth_groups", "merge_model"]


def depth_groups(depth: int, groups: int) -> list[list[int]]:
    """Contiguous groups of ``depth`` block indices, sizes differing by at most one
    (larger groups first): 7 blocks into 4 groups -> [[0, 1], [2, 3], [4, 5], [6]].

    Raises:
        ValueError: ``groups`` is not in [1, depth].
    """
    if not 1 <= groups <= depth:
        raise UsageError(f"cannot merge {depth} blocks into {groups}: the depth must be in [1, {depth}]")
    size, extra = divmod(depth, groups)
    out, start = [], 0
    for g in range(groups):
        n = size + (g < extra)
        out.append(list(range(start, start + n)))
        start += n
    return out


def _fold(norm: nn.LayerNorm, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(W diag g, W b + c): ``linear`` reading ``norm``'s normalised input without its affine."""
    weight, bias = linear.weight.detach(), linear.bias.detach()
    if norm.weight is None:
        return weight.clone(), bias.clone()
    return weight * norm.weight.detach(), bias + weight @ norm.bias.detach()


def _check_plain(block: nn.Module) -> Block:
    plain = isinstance(block, Block) and block.attn.qkv.bias is not None and isinstance(block.mlp.act, nn.GELU) and all(
        isinstance(m, nn.Identity) for m in (block.ls1, block.ls2, block.attn.q_norm, block.attn.norm))
    if not plain:
        raise UsageError("structural reparameterization needs plain timm ViT blocks (qkv bias, no layer scale, no "
                         "q/k norm, GELU MLP): reparameterize the teacher before rewriting it")
    return block


class BranchBlock(nn.Module):
    """K parallel ViT blocks with shared LayerNorms and blended pre-activations.

    Args:
        blocks: The K timm blocks whose weights start the branches (same shapes).
        ramp: Share of training over which lambda rises from 0 to 1.
    """

    def __init__(self, blocks: list[nn.Module], ramp: float = 0.5):
        super().__init__()
        self.ramp = ramp
        blocks = [_check_plain(b) for b in blocks]
        first = blocks[0]
        dim = first.norm1.normalized_shape[0]
        self.num_heads, self.scale = first.attn.num_heads, first.attn.scale
        self.norm1 = nn.LayerNorm(dim, eps=first.norm1.eps, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, eps=first.norm2.eps, elementwise_affine=False)
        qkv = [_fold(b.norm1, b.attn.qkv) for b in blocks]
        fc1 = [_fold(b.norm2, b.mlp.fc1) for b in blocks]
        stack = lambda ts: nn.Parameter(torch.stack([t.detach().clone() for t in ts]))  # noqa: E731
        self.qkv_weight, self.qkv_bias = stack([w for w, _ in qkv]), stack([b for _, b in qkv])
        self.proj_weight, self.proj_bias = stack([b.attn.proj.weight for b in blocks]), stack([b.attn.proj.bias for b in blocks])
        self.fc1_weight, self.fc1_bias = stack([w for w, _ in fc1]), stack([b for _, b in fc1])
        self.fc2_weight, self.fc2_bias = stack([b.mlp.fc2.weight for b in blocks]), stack([b.mlp.fc2.bias for b in blocks])
        self.register_buffer("lam", torch.zeros(()))

    @property
    def branches(self) -> int:
        return self.qkv_weight.shape[0]

    def schedule(self, progress: float) -> None:
        """lambda = min(1, progress / ramp) at ``progress`` (0..1) through training."""
        self.lam.fill_(min(1.0, progress / self.ramp) if self.ramp > 0 else 1.0)

    def _blend(self, h: torch.Tensor) -> torch.Tensor:
        """(1 - lambda) h_k + lambda mean_j h_j over the branch dimension 0."""
        return (1 - self.lam) * h + self.lam * h.mean(0, keepdim=True)

    def _attention(self, x_hat: torch.Tensor) -> torch.Tensor:
        b, n, d = x_hat.shape
        qkv = self._blend(torch.einsum("bnd,kod->kbno", x_hat, self.qkv_weight) + self.qkv_bias[:, None, None])
        q, k, v = qkv.view(self.branches, b, n, 3, self.num_heads, d // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1) @ v  # (K, b, heads, n, d_h)
        attn = attn.transpose(2, 3).reshape(self.branches, b, n, d)
        return torch.einsum("kbnd,kod->bno", attn, self.proj_weight) + self.proj_bias.sum(0)

    def _mlp(self, x_hat: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self._blend(torch.einsum("bnd,khd->kbnh", x_hat, self.fc1_weight) + self.fc1_bias[:, None, None]))
        return torch.einsum("kbnh,kdh->bnd", h, self.fc2_weight) + self.fc2_bias.sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attention(self.norm1(x))
        return x + self._mlp(self.norm2(x))

    @torch.no_grad()
    def merge(self) -> Block:
        """The single timm ``Block`` this block equals at lambda = 1 (LayerNorm affines
        identity, the folded affines living in qkv and fc1)."""
        dim, hidden = self.qkv_weight.shape[2], self.fc1_weight.shape[1]
        block = Block(dim, self.num_heads, mlp_ratio=hidden / dim, qkv_bias=True)
        block.norm1.eps, block.norm2.eps = self.norm1.eps, self.norm2.eps
        for lin, (w, b) in ((block.attn.qkv, (self.qkv_weight.mean(0), self.qkv_bias.mean(0))),
                            (block.attn.proj, (self.proj_weight.sum(0), self.proj_bias.sum(0))),
                            (block.mlp.fc1, (self.fc1_weight.mean(0), self.fc1_bias.mean(0))),
                            (block.mlp.fc2, (self.fc2_weight.sum(0), self.fc2_bias.sum(0)))):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        return block.eval()


def branch_model(teacher: VisionTransformer, depth: int, ramp: float = 0.5) -> tuple[VisionTransformer, list[list[int]]]:
    """A copy of ``teacher`` with its blocks grouped into ``depth`` :class:`BranchBlock` s
    (each group's teacher blocks become its branches, lambda rising over ``ramp`` of
    training); returns it and the groups."""
    if not isinstance(teacher, VisionTransformer):
        raise UsageError("structural reparameterization needs a timm VisionTransformer")
    groups = depth_groups(len(teacher.blocks), depth)
    model = copy.deepcopy(teacher)
    model.blocks = nn.Sequential(*(BranchBlock([teacher.blocks[i] for i in g], ramp) for g in groups))
    return model, groups


def merge_model(model: VisionTransformer) -> VisionTransformer:
    """``model`` (from :func:`branch_model`) with every :class:`BranchBlock` merged: a plain
    ViT of the same depth, equal to the lambda = 1 branch model."""
    merged = copy.deepcopy(model)
    merged.blocks = nn.Sequential(*(b.merge() for b in model.blocks))
    return merged.eval()
