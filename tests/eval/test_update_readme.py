"""``benchmarks/update_readme.py``: only the text between the markers is replaced."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "update_readme.py"


def _module():
    spec = importlib.util.spec_from_file_location("update_readme", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
