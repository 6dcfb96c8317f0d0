"""The import graph of ``src/facefit``: no cycles between modules and no private names imported
across modules. Every import statement counts, lazy ones inside functions included; imports
under ``if TYPE_CHECKING:`` (never executed) do not. Importing ``a.b.c`` is an edge to the
module ``a.b.c`` only (not to the packages ``a`` and ``a.b`` that Python also initialises), and
``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "facefit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else (
                test.attr if isinstance(test, ast.Attribute) else None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(edges module -> imported facefit modules, private-name imports as text)."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_nodes(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        edges[mod].add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, is_package, node)
                if target.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges[mod].add(sub)
                        continue
                    if target in modules:
                        edges[mod].add(target)
                    dunder = alias.name.startswith("__") and alias.name.endswith("__")
                    if alias.name.startswith("_") and not dunder and target != mod:
                        private.append(f"{mod}: from {target} import {alias.name}")
    for mod in edges:
        edges[mod].discard(mod)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # iterative enough for a package of a few hundred modules
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def test_graph_walker_finds_lazy_imports_cycles_and_private_names(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from facefit.c import X\n"
                              "def f():\n    from facefit.sub.b import _hidden\n")
    (pkg / "sub" / "b.py").write_text("import facefit.a\n")
    (pkg / "c.py").write_text("from facefit.a import f\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    edges, private = import_graph()
    assert edges["facefit.a"] == {"facefit.sub.b"}  # lazy import counted, TYPE_CHECKING not
    assert edges["facefit.sub"] == {"facefit.sub.b"}
    assert cycles(edges) == [["facefit.a", "facefit.sub.b"]]
    assert private == ["facefit.a: from facefit.sub.b import _hidden"]


def test_no_import_cycles_between_modules() -> None:
    found = cycles(import_graph()[0])
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_no_private_names_imported_across_modules() -> None:
    found = sorted(import_graph()[1])
    assert not found, "\n".join(found)


ALLOWED_PRIVATE = {
    ("os", "_exit"): "the documented way out of a forked worker",
    ("argparse", "_SubParsersAction"): "the standard library's type of add_subparsers()",
    ("pickle", "_Unpickler"): "the pure-Python unpickler the restricted one extends",
    ("m", "_fieldnames"): "scipy.io's mat_struct lists its fields there",
    ("other", "_prev"): "an instance of the same class (FrameFitter.warm_start_from)",
    **{("torch", op): "torch's multi-tensor ops, as torch.optim.Adam uses them "
       "(fit.photometric.adam)" for op in (
        "_foreach_lerp_", "_foreach_mul_", "_foreach_addcmul_", "_foreach_sqrt",
        "_foreach_div_", "_foreach_add_", "_foreach_addcdiv_")},
}


def private_attribute_uses(source: str) -> list[int]:
    """Line numbers where ``obj._name`` (not a dunder) is used on anything but
    ``self``/``cls`` (and the cases of `ALLOWED_PRIVATE`): a reach into another object's
    private state, as the video tracker once took the detector's lock and called its
    ``_track``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            continue
        owner = node.value.id if isinstance(node.value, ast.Name) else None
        if owner in ("self", "cls") or (owner, node.attr) in ALLOWED_PRIVATE:
            continue
        lines.append(node.lineno)
    return lines


def test_private_attribute_finder() -> None:
    src = ("class A:\n    def f(self, d):\n        self._x = 1\n        with d._lock:\n"
           "            return d.__len__()\n")
    assert private_attribute_uses(src) == [4]


def test_no_private_attributes_of_other_objects() -> None:
    found = {str(p.relative_to(SRC)): private_attribute_uses(p.read_text())
             for p in SRC.rglob("*.py")}
    assert {k: v for k, v in found.items() if v} == {}
