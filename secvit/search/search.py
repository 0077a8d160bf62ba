"""Search driver: relax a rewritten model's attentions, then binarise at a budget into a
policy (YAML) whose retraining is ``secvit train --init C --policy POLICY``.

Budget: ``fraction`` of all heads kept as ReLU-softmax (MPCViT's mu), ``max_bytes``
(per party, per image) for their ReLU-softmax bytes, or ``max_rounds`` for their rounds
(paid once per layer that has any); heads are ranked by alpha over all layers at once,
ties by layer then head.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
import yaml

from ..mpc_modules import MPCAttention
from ..rewrite.graph import block_layers, layer_of, set_submodule
from .mixed import RELU, SCALING, MixedAttention
from ..errors import UsageError

__all__ = ["binarise", "policy_dict", "relax", "write_policy"]


def relax(model: nn.Module, tokens: int, lam: float, alpha_lr_scale: float = 1.0) -> list[MixedAttention]:
    """Replace every :class:`MPCAttention` of a rewritten model by a :class:`MixedAttention`
    (in place); returns them in layer order."""
    blocks = block_layers(model)
    found = [(path, m) for path, m in model.named_modules() if isinstance(m, MPCAttention)]
    if not found:
        raise UsageError("the search relaxes MPCAttention modules: rewrite the model by a policy first")
    mixed = []
    for path, attn in sorted(found, key=lambda pm: layer_of(pm[0], blocks) or 0):
        mixed.append(MixedAttention(attn, tokens, lam, alpha_lr_scale))
        set_submodule(model, path, mixed[-1])
    total = float(sum(m.cost.sum() for m in mixed))
    for m in mixed:
        m.total_cost = total
    return mixed


def binarise(alphas: list[list[float]], head_bytes: int, fraction: float | None = None,
             max_bytes: int | None = None, max_rounds: int | None = None, layer_rounds: int = 0) -> list[list[str]]:
    """Per layer, per head: ``softmax.relu`` for the top-alpha heads within the budget,
    ``softmax.scaling`` for the rest.

    Budgets: a ``fraction`` of all heads; ``max_bytes`` of ReLU-softmax bytes (each head
    costs ``head_bytes``); or ``max_rounds`` of ReLU-softmax rounds, where a layer costs
    ``layer_rounds`` once it holds any ReLU-softmax head (its heads run in one op), so
    heads are taken in alpha order while they fall in a layer already paid for or a new
    layer still fits.

    Raises:
        ValueError: not exactly one budget, or a fraction outside [0, 1].
    """
    if sum(b is not None for b in (fraction, max_bytes, max_rounds)) != 1:
        raise UsageError("give exactly one budget: a fraction of heads, a byte budget or a round budget")
    heads = [(layer, head) for layer, row in enumerate(alphas) for head in range(len(row))]
    ranked = sorted(heads, key=lambda lh: (-alphas[lh[0]][lh[1]], lh))
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise UsageError(f"fraction {fraction} is not in [0, 1]")
        chosen = set(ranked[: round(fraction * len(heads))])
    elif max_bytes is not None:
        chosen = set(ranked[: min(len(heads), max_bytes // head_bytes) if head_bytes else len(heads)])
    else:
        paid: set[int] = set()
        max_layers = max_rounds // layer_rounds if layer_rounds else len(alphas)
        chosen = set()
        for layer, head in ranked:
            if layer in paid or len(paid) < max_layers:
                paid.add(layer)
                chosen.add((layer, head))
    return [[RELU if (layer, head) in chosen else SCALING for head in range(len(row))]
            for layer, row in enumerate(alphas)]


def policy_dict(choice: list[list[str]], name: str, base: dict) -> dict:
    """A policy: the searched heads per layer, activation and norm sections from ``base``."""
    return {"name": name, "description": "searched by secvit search (MPCViT: alpha-ranked heads)",
            "attention": {"default": SCALING, "heads": dict(enumerate(choice))},
            **{k: base[k] for k in ("activation", "norm") if k in base}}


def write_policy(policy: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(policy, sort_keys=False))


def _tokens(model: nn.Module, meta) -> int:
    """Tokens per image entering the attentions (one probe forward)."""
    import torch

    seen: list[int] = []
    attn = next(m for m in model.modules() if isinstance(m, MPCAttention))
    handle = attn.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        model(torch.zeros(1, meta.in_chans, meta.img_size, meta.img_size))
    handle.remove()
    return seen[0]


def run_search(checkpoint: str, out: str | Path, fraction: float | None = None, max_bytes: int | None = None,
               base_policy: str = "mpcvit", lam: float = 1.0, epochs: int = 5, lr: float = 5e-4,
               alpha_lr: float = 1e-2, seed: int = 0, max_rounds: int | None = None) -> dict:
    """Relax ``checkpoint``'s model (rewritten by ``base_policy``), train weights (at
    ``lr``) and alphas (at ``alpha_lr``) for ``epochs``, binarise at the budget and write
    the policy YAML to ``out``; returns ``{"policy", "alphas", "relu_heads", "heads"}``."""
    from ..checkpoint import load_model
    from ..data import load_dataset
    from ..rewrite import load_policy, rewrite
    from ..train import TrainConfig, fit
    from .mixed import head_cost, layer_rounds

    if sum(b is not None for b in (fraction, max_bytes, max_rounds)) != 1:
        raise UsageError("give exactly one budget: --fraction, --max-mb or --max-rounds")
    base = load_policy(base_policy)
    model, meta = load_model(checkpoint)
    model = rewrite(model, base)[0]
    tokens = _tokens(model, meta)
    mixed = relax(model, tokens, lam, alpha_lr / lr)
    data = load_dataset(meta.data, meta.img_size, meta.in_chans)
    fit(model, data, meta.normalization, TrainConfig(model=meta.model, data=meta.data, epochs=epochs, lr=lr,
                                                      seed=seed, warmup_epochs=min(1, epochs)))
    alphas = [m.weights().detach().tolist() for m in mixed]
    choice = binarise(alphas, head_cost(tokens), fraction, max_bytes, max_rounds, layer_rounds(tokens, mixed[0].attn))
    name = Path(out).stem
    policy = policy_dict(choice, name, base.to_dict())
    write_policy(policy, out)
    relu_heads = sum(row.count(RELU) for row in choice)
    return {"policy": policy, "alphas": alphas, "relu_heads": relu_heads, "heads": sum(map(len, choice))}
