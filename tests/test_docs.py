"""scripts/build_docs.py: the docstring reference check that makes `make docs` fail."""

from __future__ import annotations

import pytest
from repo_scripts import load_script


@pytest.fixture(scope="module")
def build_docs():
    pytest.importorskip("pdoc")
    return load_script("scripts/build_docs.py")


def test_references_resolve_or_not(build_docs) -> None:
    assert build_docs._resolves("facefit.io.html.write_image_page")
    assert build_docs._resolves("facefit.texture.layout")
    assert not build_docs._resolves("facefit.io.html.no_such_function")
    assert not build_docs._resolves("facefit.no_such_module.x")


def test_the_tree_has_no_broken_references(build_docs) -> None:
    names = [n for n in build_docs.module_names()
             if n.startswith(("facefit.io", "facefit.texture"))]
    assert "facefit.io.html" in names
    assert build_docs.broken_references(names) == []
