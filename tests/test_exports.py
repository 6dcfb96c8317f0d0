"""Package exports (`facefit.exports.lazy_exports`): every name in a package's ``__all__``
resolves to the object of its defining module, ``dir()`` lists them, unknown names raise
AttributeError, and ``import facefit`` does not import torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["facefit", "facefit.model", "facefit.fit", "facefit.detect", "facefit.io",
            "facefit.render", "facefit.texture", "facefit.eval"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve(name: str) -> None:
    pkg = importlib.import_module(name)
    assert pkg.__all__
    for attr in pkg.__all__:
        obj = getattr(pkg, attr)
        assert attr in dir(pkg)
        module = getattr(obj, "__module__", None)
        if module is not None and module.startswith("facefit."):
            assert getattr(importlib.import_module(module), attr) is obj
    with pytest.raises(AttributeError, match="no attribute"):
        _ = pkg.no_such_name_xyz


def test_import_facefit_does_not_import_torch() -> None:
    code = "import sys, facefit; facefit.Reconstructor; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
