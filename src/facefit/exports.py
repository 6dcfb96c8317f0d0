"""Package-level names that load their module on first use (PEP 562).

``facefit.fit.fit_face`` and friends mirror the folders (as eos's Python modules do) without
importing every module of a package, and torch with them, when the package is imported::

    __getattr__, __dir__ = lazy_exports(__name__, {"fit_face": "facefit.fit.face_fit"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, names: Mapping[str, str]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for ``package``: each name in ``names`` is the attribute of
    the same name of its module (a full module path), imported on first access and then kept
    in the package's namespace (later lookups are plain attribute reads)."""
    table = dict(names)

    def getattr_(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return getattr_, dir_
