"""MPCAttention: multi-head attention with one softmax protocol per head, and its secure form."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

import protocols
from protocols.fixed_point import cat

from ..ops import UnsupportedOpError, linear_of, module_op, region, register_module
from ..query_grouping import QueryGrouping

__all__ = ["MPCAttention", "head_groups"]


def head_groups(head_protocols: list[str]) -> "OrderedDict[str, list[int]]":
    """Heads per protocol, in first-use order: each group runs as one batched op."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for head, name in enumerate(head_protocols):
        groups.setdefault(name, []).append(head)
    return groups


def _tiny_vit_qkv(attn: nn.Module) -> nn.Linear:
    """TinyViT's qkv Linear with its rows reordered from per-head [q, k, v] to [q; k; v]
    over heads (the ViT layout): an exact permutation of output features."""
    if attn.key_dim != attn.val_dim:
        raise ValueError(f"MPCAttention needs key_dim == val_dim (got {attn.key_dim} and {attn.val_dim})")
    heads, d = attn.num_heads, attn.key_dim
    order = torch.arange(heads * 3 * d).view(heads, 3, d).transpose(0, 1).reshape(-1)
    qkv = nn.Linear(attn.qkv.in_features, attn.qkv.out_features, bias=attn.qkv.bias is not None)
    with torch.no_grad():
        qkv.weight.copy_(attn.qkv.weight[order])
        if attn.qkv.bias is not None:
            qkv.bias.copy_(attn.qkv.bias[order])
    return qkv


class MPCAttention(nn.Module):
    """Multi-head self-attention with one softmax protocol per head (heterogeneous).

    Replaces timm's ``Attention`` (ViT, DeiT) or TinyViT's window ``Attention`` (its input
    LayerNorm becomes ``pre_norm``, its learned relative-position biases are added to
    the logits) with the same weights. Heads sharing a protocol are computed in one tensor
    op; a model with two protocols costs two ops per layer, never one per head.

    Args:
        attn: The attention to replace (plain q/k, no q/k or output norm).
        head_protocols: One softmax-kind protocol name per head.
    """

    def __init__(self, attn: nn.Module, head_protocols: list[str]):
        super().__init__()
        if len(head_protocols) != attn.num_heads:
            raise ValueError(f"{len(head_protocols)} head protocols for {attn.num_heads} heads")
        self.num_heads, self.scale, self.proj = attn.num_heads, attn.scale, attn.proj
        self.attention_biases: nn.Parameter | None = None
        if hasattr(attn, "attention_biases"):  # TinyViT
            self.qkv, self.head_dim, self.pre_norm = _tiny_vit_qkv(attn), attn.key_dim, attn.norm
            self.attention_biases = attn.attention_biases
            self.register_buffer("attention_bias_idxs", attn.attention_bias_idxs.clone(), persistent=False)
        else:
            if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.norm, nn.Identity):
                raise ValueError("MPCAttention supports attention without q/k or output norms")
            self.qkv, self.head_dim, self.pre_norm = attn.qkv, attn.head_dim, nn.Identity()
        self.kv_heads = self.num_heads
        self.grouping: QueryGrouping | None = None  # grouped-query attention (secvit.gqa)
        self.head_protocols = list(head_protocols)
        for name in self.head_protocols:
            if protocols.get(name).kind != "softmax":
                raise ValueError(f"{name} is not a softmax protocol")

    def split_heads(self, qkv, b: int, n: int):
        """q, k, v as (b, heads, n, d) from the qkv projection (plain or encrypted): the
        columns are [q of every head; k of every K/V head; v likewise]; with grouped-query
        attention (``kv_heads`` < ``num_heads``) each query head reads the K/V head its
        ``grouping`` names (a public index, no communication)."""
        h, g, d = self.num_heads, self.kv_heads, self.head_dim
        q = qkv[..., : h * d].reshape(b, n, h, d).permute(0, 2, 1, 3)
        kv = qkv[..., h * d :].reshape(b, n, 2, g, d).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        if g != h:
            shared = self.grouping.index(k, self.training)
            k, v = k.index_select(1, shared), v.index_select(1, shared)
        return q, k, v

    def logit_bias(self) -> torch.Tensor | None:
        """The (heads, N, N) additive position bias, or None."""
        if self.attention_biases is None:
            return None
        return self.attention_biases[:, self.attention_bias_idxs]

    def logits_and_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention logits (b, heads, n, n), position biases added, and the values."""
        b, n, _ = x.shape
        q, k, v = self.split_heads(self.qkv(self.pre_norm(x)), b, n)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.logit_bias()
        return (logits + bias if bias is not None else logits), v

    def output(self, attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Heads' attention-weighted values, concatenated and projected."""
        b, _, n, _ = attn.shape  # n queries (the keys may be more: secvit.pwca)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("MPCAttention does not support attention masks")
        logits, v = self.logits_and_values(x)
        attn = torch.empty_like(logits)
        for name, heads in head_groups(self.head_protocols).items():
            attn[:, heads] = protocols.get(name).reference(logits[:, heads])
        if self.grouping is not None:
            attn = self.grouping.perturb(attn, self.training)
        return self.output(attn, v)

    def extra_repr(self) -> str:
        groups = (f", kv_heads={self.kv_heads} ({self.grouping.mode}: {self.grouping.assignment})"
                  if self.grouping is not None else "")
        return f"heads={self.head_protocols}{groups}"


def _scale_divisor(m: MPCAttention) -> int | None:
    """1 / scale when it is an integer (head widths 64, 16, ...): the logits' truncation
    divides by it at no cost; otherwise None (the owner folds the scale into q)."""
    d = round(1.0 / m.scale)
    return d if abs(1.0 / m.scale - d) < 1e-9 else None


def _attention_prepare(m: MPCAttention) -> dict[str, torch.Tensor]:
    """The owner's secrets; a logit scale that is not 1 / an integer is folded into q's
    weights and bias (exact in plaintext; under MPC a product by the public scale would
    cost a truncation)."""
    secrets = {f"{sub}.{k}": v for sub in ("qkv", "proj", "pre_norm")
               for k, v in module_op(getattr(m, sub)).prepare(getattr(m, sub)).items()}
    q = m.num_heads * m.head_dim  # q's columns come first
    for name in ("qkv.weight_t", "qkv.bias") if _scale_divisor(m) is None else ():
        if name in secrets:
            scaled = secrets[name].clone()
            scaled[..., :q] *= m.scale
            secrets[name] = scaled
    bias = m.logit_bias()  # the owner gathers its position biases by the public index
    return secrets | ({"logit_bias": bias.detach()} if bias is not None else {})


def _attention_refuses(m: MPCAttention) -> str | None:
    """Key-driven query allocation (``kdgqa``) depends on the input: refused."""
    if m.grouping is not None and m.grouping.data_dependent:
        return ("with kdgqa allocates query heads from the key norms of each input: under MPC the allocation would "
                "reveal data through shapes; train with --gqa-mode dgqa (allocation fixed by the end of training) "
                "or mean")
    return None


@register_module(MPCAttention, kind="attention", prepare=_attention_prepare, refuses=_attention_refuses,
                 stationary=("qkv.weight_t", "proj.weight_t"))
def _secure_attention(m: MPCAttention, s: dict, x, attn_mask=None, is_causal: bool = False):
    """The secure form; each step is a profiler region, each group of heads sharing a
    protocol one batched op."""
    if attn_mask is not None or is_causal:
        raise UnsupportedOpError("attention masks are not supported under MPC")
    b, n, _ = x.size()
    if not isinstance(m.pre_norm, nn.Identity):
        pre_norm = {k.removeprefix("pre_norm."): v for k, v in s.items() if k.startswith("pre_norm.")}
        op = module_op(m.pre_norm)
        op.check("pre_norm")
        with region("pre_norm", "norm", op.protocol(m.pre_norm)):
            x = op.secure(m.pre_norm, pre_norm, x)
    with region("qkv", "linear"):
        q, k, v = m.split_heads(linear_of(s, "qkv.", x), b, n)
    groups = head_groups(m.head_protocols)
    only = protocols.get(m.head_protocols[0]) if len(groups) == 1 else None
    folded = only is not None and only.divisor is not None and "logit_bias" not in s
    # the logits' truncation also divides by 1 / scale (else q came scaled) and, when the
    # softmax is a division by a public integer, by that
    divisor = (_scale_divisor(m) or 1) * (only.divisor(n) if folded else 1)
    with region("q@k", "matmul"):
        logits = q.matmul_div(k.transpose(-2, -1), divisor) if divisor > 1 else q.matmul(k.transpose(-2, -1))
    if "logit_bias" in s:
        logits = logits + s["logit_bias"]
    if only is not None:
        with region(only.name, "softmax", only.name):
            attn = logits if folded else only.secure(logits)
    else:  # one batched op per protocol, then the heads back in their order (public permutation)
        order = [h for heads in groups.values() for h in heads]
        parts = []
        for name, heads in groups.items():
            with region(name, "softmax", name):
                parts.append(protocols.get(name).secure(logits.index_select(1, torch.tensor(heads))))
        attn = cat(parts, dim=1).index_select(1, torch.argsort(torch.tensor(order)))
    with region("attn@v", "matmul"):
        out = attn.matmul(v).transpose(1, 2).reshape(b, n, m.num_heads * m.head_dim)
    with region("proj", "linear"):
        return linear_of(s, "proj.", out)
