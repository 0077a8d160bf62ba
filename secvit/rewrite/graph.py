"""Graph helpers for the passes: module swaps, layer indices, a networkx view, op counts."""

from __future__ import annotations

from collections import Counter

import networkx as nx
import torch.fx as fx
import torch.nn as nn

from ..ops import kind_of, node_kind
from ..tracing import leaf_modules, traced_per_shape

__all__ = ["attention_heads", "block_layers", "layer_of", "modules_of", "op_counts", "set_submodule", "to_networkx"]


def set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at dotted ``path``."""
    parent_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, name, new)


def block_layers(root: nn.Module) -> list[str]:
    """Paths of the transformer blocks (modules holding an attention), in order."""
    return [path for path, module in root.named_modules()
            if path and any(kind_of(c) == "attention" for c in module.children())]


def attention_heads(block: nn.Module) -> int:
    """The head count of a block's attention."""
    return next(c.num_heads for c in block.children() if kind_of(c) == "attention")


def modules_of(root: nn.Module, types: type[nn.Module] | tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every submodule of ``types``, in registration order; taken
    as a list first, so the caller may replace them as it goes. Modules inside the leaf
    blocks that are traced per shape (TinyViT's) are included: passes rewrite modules,
    not graph nodes."""
    return [(path, m) for path, m in root.named_modules() if path and isinstance(m, types)]


def layer_of(path: str, blocks: list[str]) -> int | None:
    """Index of the block that contains ``path`` (None outside every block)."""
    for i, block in enumerate(blocks):
        if path == block or path.startswith(block + "."):
            return i
    return None


def _module_attrs(m: nn.Module) -> dict:
    attrs = {"module": type(m).__name__}
    protocol = getattr(m, "protocol", None) or getattr(m, "head_protocols", None)
    if protocol is not None:
        attrs["protocol"] = protocol
    return attrs


def to_networkx(gm: fx.GraphModule) -> nx.DiGraph:
    """The graph as a networkx DiGraph: nodes carry ``op``, ``target``, ``kind`` and
    (for modules) ``module`` type and ``protocol``. A block traced per input shape
    (TinyViT's) is one node whose ``inner`` lists its modules' attributes."""
    g = nx.DiGraph()
    for node in gm.graph.nodes:
        attrs = {"op": node.op, "target": str(node.target), "kind": node_kind(gm, node)}
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            attrs |= _module_attrs(m)
            if traced_per_shape(m):
                attrs["inner"] = [{"kind": kind_of(sub), **_module_attrs(sub)} for _, sub in leaf_modules(m)]
        g.add_node(node.name, **attrs)
        for arg in node.all_input_nodes:
            g.add_edge(arg.name, node.name)
    return g


def _label(data: dict) -> str:
    protocol = data.get("protocol")
    if isinstance(protocol, list):
        protocol = " + ".join(f"{n}x{name}" for name, n in sorted(Counter(protocol).items()))
    return f"{data['kind']}: {protocol or data.get('module') or data['target']}"


def op_counts(gm: fx.GraphModule) -> dict[str, int]:
    """Ops per kind and module type or protocol, e.g. ``{"attention: 4xsoftmax.2quad": 7}``
    (``other`` nodes, the shape and indexing glue, are left out; the modules inside
    per-shape blocks count one each)."""
    records = [r for _, d in to_networkx(gm).nodes(data=True) for r in [d, *d.get("inner", [])]]
    counts = Counter(_label(r) for r in records if r["kind"] != "other")
    return dict(sorted(counts.items()))
