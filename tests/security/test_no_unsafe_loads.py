"""No code path of facefit reads a file with a loader that can run code from it.

Walks every module of ``src/facefit`` (the syntax tree, so calls split over lines count):
``pickle.load(s)`` / ``Unpickler`` only inside `facefit.io.safe_pickle`; no numpy
``allow_pickle=True``; ``torch.load`` (and ``torch.jit.load``, except as listed in `EXEMPT`
with the reason) only with ``weights_only=True``; no ``yaml.load`` without a safe loader,
and no ``dill`` / ``joblib`` / ``cloudpickle`` / ``marshal`` loads.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "facefit"
SAFE_MODULE = SRC / "io" / "safe_pickle.py"
# Loaders that cannot run Python from the file (what they do instead, and why they stay)
EXEMPT = {
    ("facefit/eval/generative.py", "torch.jit.load"):
        "a TorchScript feature network the user names for FID/KID: its archive is read by "
        "torch's C++ unpickler (tensors and TorchScript types only), its code is TorchScript",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _kw(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def unsafe_calls(path: Path, root: Path = SRC.parent) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{path.relative_to(root)}:{node.lineno}: {name}"
        if path != SAFE_MODULE and name.split(".")[-1] in ("load", "loads", "Unpickler",
                                                           "_Unpickler") and (
                name.split(".")[0] in ("pickle", "_pickle", "cPickle", "dill", "joblib",
                                       "cloudpickle", "marshal", "shelve")):
            found.append(where)
        if _kw(node, "allow_pickle") is True:
            found.append(f"{where}(allow_pickle=True)")
        exempt = (str(path.relative_to(root)), name) in EXEMPT
        if name in ("torch.load", "torch.jit.load") and _kw(node, "weights_only") is not True \
                and not exempt:
            found.append(f"{where} without weights_only=True")
        if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
            loader = next((_dotted(k.value) for k in node.keywords if k.arg == "Loader"), "")
            if "Safe" not in loader:
                found.append(f"{where} without a SafeLoader")
    return found


def test_no_unsafe_loader_in_src():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20 and SAFE_MODULE in files
    found = [hit for f in files for hit in unsafe_calls(f)]
    assert not found, found


def test_the_check_finds_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"  # parsed only, never imported
    probe.write_text("import pickle, torch, numpy as np\n"
                     "a = pickle.load(open('f', 'rb'))\n"
                     "b = np.load('x.npy',\n            allow_pickle=True)\n"
                     "c = torch.load('w.pt')\n"
                     "d = torch.load('w.pt', weights_only=True)\n")
    hits = unsafe_calls(probe, root=tmp_path)
    assert len(hits) == 3
    assert any("pickle.load" in h for h in hits)
    assert any("allow_pickle=True" in h for h in hits)
    assert any("torch.load without weights_only=True" in h for h in hits)
