"""``benchmarks/update_readme.py``: only the text between the markers is replaced."""

from __future__ import annotations

import pytest
from repo_scripts import load_script


def _module():
    return load_script("benchmarks/update_readme.py")


def test_replace_block_keeps_prose() -> None:
    mod = _module()
    text = ("intro\n<!-- table:a -->\nold a\n<!-- /table -->\nnote a\n"
            "<!-- table:b -->\nold b\n<!-- /table -->\nnote b\n")
    out = mod.replace_block(text, "a", mod.block("cmd", "t 1\n", "commit x"))
    assert out.startswith("intro\n<!-- table:a -->\n`cmd` (commit x):\n\n```\nt 1\n```\n"
                          "<!-- /table -->\nnote a\n<!-- table:b -->\nold b\n")
    assert out.endswith("note b\n")
    with pytest.raises(ValueError):
        mod.replace_block(text, "missing", "x")


def test_readme_has_every_marker() -> None:
    mod = _module()
    readme = mod.README.read_text()
    for name in mod.NAMES:
        assert f"<!-- table:{name} -->" in readme
