"""The layering rules, read from the source: ``protocols`` never imports ``secvit``, and
CrypTen is imported in exactly one file (everything else gets it from ``protocols.backend``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CRYPTEN_IMPORT_POINT = ROOT / "protocols" / "backend.py"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("path", _sources("protocols"), ids=lambda p: str(p.relative_to(ROOT)))
def test_protocols_never_import_secvit(path):
    assert "secvit" not in _top_level(_imported_modules(path))


def test_crypten_has_one_import_point():
    importers = [p for p in _sources("protocols", "secvit", "benchmarks", "tests")
                 if "crypten" in _top_level(_imported_modules(p))]
    assert importers == [CRYPTEN_IMPORT_POINT]


def test_the_rule_sees_an_import():
    """The control: the scan finds the import point's own ``import crypten``."""
    assert "crypten" in _imported_modules(CRYPTEN_IMPORT_POINT)
    assert _top_level({"crypten.mpc.primitives"}) == {"crypten"}


def _package_edges() -> set[tuple[str, str]]:
    """(a, b): a module of secvit subpackage ``a`` imports one of subpackage ``b``
    (relative imports resolved; top-level modules count as their own "package")."""
    edges = set()
    for path in _sources("secvit"):
        parts = path.relative_to(ROOT / "secvit").with_suffix("").parts
        here = parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(parts[:-1])[: len(parts) - node.level]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if target and target[0] != here:
                    edges.add((here, target[0]))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("secvit."):
                target = node.module.split(".")[1]
                if target != here:
                    edges.add((here, target))
    return edges


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_secvit_packages_import_one_way():
    """No cycle between secvit's packages, and the rewriter does not depend on the secure engine."""
    edges = _package_edges()
    assert _cycle(edges) is None, f"import cycle: {' -> '.join(_cycle(edges))}"
    assert ("rewrite", "secure") not in edges and ("runtime", "profile") not in edges


def test_the_cycle_check_finds_a_cycle():
    """The control."""
    assert _cycle({("a", "b"), ("b", "c"), ("c", "a")}) is not None
    assert _cycle({("a", "b"), ("b", "c")}) is None
