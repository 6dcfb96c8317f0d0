"""Build facefit's HTML API reference from its docstrings with pdoc (``make docs``).

The first page (``index.html``) is ``docs/index.md``, the pipeline overview; every module
gets its page. The build fails (exit 1) when a docstring refers, in backticks, to a
``facefit.…`` name that does not exist, or when a module cannot be imported. Usage::

    python scripts/build_docs.py --out build/docs
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render
import pdoc.render_helpers

ROOT = Path(__file__).resolve().parents[1]
_REF = re.compile(r"`(facefit(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def module_names(package: str = "facefit") -> list[str]:
    """Every module of the package, the package first."""
    pkg = importlib.import_module(package)
    return [package] + sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")
                              if not m.name.rsplit(".", 1)[-1].startswith("_"))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def broken_references(names: list[str]) -> list[str]:
    """``module: `facefit.x.y``` for every backticked facefit reference that does not
    resolve, in the docstrings of the modules and of their classes and functions."""
    bad = []
    for name in names:
        mod = importlib.import_module(name)
        docs = [inspect.getdoc(mod) or ""]
        for _, obj in inspect.getmembers(mod):
            if getattr(obj, "__module__", None) == name and (inspect.isclass(obj)
                                                             or inspect.isfunction(obj)):
                docs.append(inspect.getdoc(obj) or "")
                if inspect.isclass(obj):
                    docs += [inspect.getdoc(m) or "" for _, m in inspect.getmembers(obj)
                             if inspect.isfunction(m)]
        for text in docs:
            bad += [f"{name}: `{ref}`" for ref in _REF.findall(text) if not _resolves(ref)]
    return sorted(set(bad))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "docs")
    args = parser.parse_args(argv)
    names = module_names()
    bad = broken_references(names)
    if bad:
        print("broken docstring references:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    for name in names:  # resolve the lazily exported names so pdoc sees them
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", ()):
            getattr(mod, attr, None)
    pdoc.render.configure(docformat="google", show_source=False,
                          footer_text="facefit API reference")
    with warnings.catch_warnings():  # each package spec also adds its submodules: harmless
        warnings.filterwarnings("ignore", message="The module specification")
        pdoc.pdoc(*names, output_directory=args.out)
    overview = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    body = pdoc.render_helpers.to_html(overview)
    links = "".join(f'<li><a href="{n.replace(".", "/")}.html">{n}</a></li>' for n in names
                    if (args.out / f'{n.replace(".", "/")}.html').is_file())
    (args.out / "index.html").write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>facefit API "
        "reference</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;"
        "margin:2em auto;padding:0 1em}code,pre{background:#f3f3f3}</style></head><body>"
        f"{body}<h2>Modules</h2><ul>{links}</ul></body></html>\n", encoding="utf-8")
    print(f"API reference: {args.out / 'index.html'} ({len(names)} modules)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
