"""The repo's scripts and benchmarks import only names that exist and are public.

Scripts are run by hand, so a renamed function breaks them silently (``benchmarks/
model_build.py`` imported a removed private helper for a while); this reads every
``from facefit... import`` in ``scripts/`` and ``benchmarks/`` and resolves each name.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("benchmarks/*.py")])


def facefit_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from facefit... import name`` in the file (nested too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facefit"):
            out += [(node.module, a.name) for a in node.names]
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_imports_resolve(path: Path) -> None:
    for module, name in facefit_imports(path):
        assert not name.startswith("_"), f"{path.name}: imports private {module}.{name}"
        mod = importlib.import_module(module)
        if not hasattr(mod, name):  # a submodule imported by name
            importlib.import_module(f"{module}.{name}")
