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
