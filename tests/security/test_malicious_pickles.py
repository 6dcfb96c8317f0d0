"""Malicious pickles in every place a model file can hold one: refused, nothing executed.

Each payload would create a sentinel file if any of it ran (`test_payloads_are_live` shows
that a plain `pickle.loads` does); every load must raise a one-line `ModelFileError` that
names the file and the refused global, and the sentinel must never appear.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from _model_formats import (  # noqa: E402
    chumpy_module,
    flame_arrays,
    make_bilinear_core,
    make_model,
    write_facescape,
    write_flame,
)

from facefit.cli import main  # noqa: E402
from facefit.io import safe_pickle  # noqa: E402
from facefit.model import ModelFileError, load_model, save_model  # noqa: E402
from facefit.model.io_flame import load_flame  # noqa: E402
from facefit.model.load import read_landmark_ids  # noqa: E402


class OsSystem:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


class Popen(OsSystem):
    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.sentinel)],))


class Eval(OsSystem):
    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.sentinel)!r}, 'w').close()",))


class Exec(OsSystem):
    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.sentinel)!r}, 'w').close()",))


def raw_os_system(sentinel: Path) -> bytes:
    """Protocol 0, written by hand: ``os.system('touch SENTINEL')``."""
    return f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()


def raw_chain(sentinel: Path) -> bytes:
    """A ``__reduce__`` chain: ``getattr(__import__('os'), 'system')('touch SENTINEL')``."""
    return (f"c__builtin__\ngetattr\n(c__builtin__\n__import__\n(S'os'\ntRS'system'\ntR"
            f"(S'touch {sentinel}'\ntR.").encode()


def raw_numpy_gadget(sentinel: Path) -> bytes:
    """A callable inside an allowed package that executes code (numpy's test helper)."""
    code = f"open({str(sentinel)!r}, 'w').close()"
    return (f"cnumpy.testing._private.utils\nrunstring\n(S\"{code}\"\n(dtR.").encode()


def raw_sparse_function(sentinel: Path) -> bytes:
    """A scipy.sparse *function* (only the matrix classes are allowed, as stand-ins)."""
    return f"cscipy.sparse\nload_npz\n(S'{sentinel}'\ntR.".encode()


PAYLOADS = {  # name -> (pickled payload given a sentinel path, global the error names)
    "os.system": (lambda s: pickle.dumps(OsSystem(s), protocol=2), "os.system"),
    "os.system-raw": (raw_os_system, "os.system"),
    "subprocess.Popen": (lambda s: pickle.dumps(Popen(s), protocol=4), "subprocess.Popen"),
    "eval": (lambda s: pickle.dumps(Eval(s), protocol=3), "builtins.eval"),
    "exec": (lambda s: pickle.dumps(Exec(s), protocol=5), "builtins.exec"),
    "reduce-chain": (raw_chain, "builtins.getattr"),  # Python 2 name, mapped
    "numpy-gadget": (raw_numpy_gadget, "numpy.testing._private.utils.runstring"),
    "sparse-function": (raw_sparse_function, "scipy.sparse.load_npz"),
}
OBJECTS = {"os.system": OsSystem, "subprocess.Popen": Popen, "eval": Eval, "exec": Exec}


def _one_line(exc: pytest.ExceptionInfo, path: Path, refused: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert text.endswith(f"pickle refers to {refused}, which a model file never needs")
    return text


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "os.system-raw"])
def test_payloads_are_live(tmp_path, name):
    """The payloads are real: an unrestricted unpickler runs them."""
    sentinel = tmp_path / "pwned"
    obj = pickle.loads(PAYLOADS[name][0](sentinel))
    if isinstance(obj, subprocess.Popen):
        obj.wait()
    assert sentinel.exists()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_top_level_pickle_refused(tmp_path, name):
    sentinel = tmp_path / "pwned"
    make, refused = PAYLOADS[name]
    path = tmp_path / "evil.pkl"
    path.write_bytes(make(sentinel))
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    _one_line(exc, path, refused)
    assert not sentinel.exists()


def _flame_dict(monkeypatch, evil: object, where: str) -> dict:
    """FLAME's dict with ``evil`` as a dict value, or inside a chumpy object's state."""
    arrays = flame_arrays(make_model(albedo=False), n_shape=6, n_exp=4)
    ch_cls, modules = chumpy_module()
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    data: dict = {k: ch_cls(v) for k, v in arrays.items()}
    if where == "value":
        data["v_template"] = evil
    else:  # chumpy state: {"x": array, "_dirty_vars": set(), ...} + a nested list
        inner = ch_cls(arrays["shapedirs"])
        inner.x = {"deep": [1, (2, evil)]}  # type: ignore[attr-defined]
        data["shapedirs"] = inner
    return data


@pytest.mark.parametrize("where", ["value", "chumpy-state"])
@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_flame_pickle_with_payload_in_dict(tmp_path, monkeypatch, name, where):
    sentinel = tmp_path / "pwned"
    data = _flame_dict(monkeypatch, OBJECTS[name](sentinel), where)
    path = tmp_path / "evil_flame.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    for mod in ("chumpy", "chumpy.ch"):
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    _one_line(exc, path, PAYLOADS[name][1])
    assert not sentinel.exists()
    assert "chumpy" not in sys.modules


def _good_flame(tmp_path: Path, monkeypatch) -> Path:
    return write_flame(tmp_path / "generic_model.pkl",
                       flame_arrays(make_model(albedo=False), n_shape=6, n_exp=4), monkeypatch)


@pytest.mark.parametrize("kind", ["landmark_embedding.npy", "flame_static_embedding.pkl",
                                  "flame_dynamic_embedding.npy"])
def test_flame_embedding_files_with_payload(tmp_path, monkeypatch, kind):
    """The payload inside an ``.npy`` object array (DECA / dynamic embedding) or the static
    embedding pickle, found beside the model or given explicitly."""
    sentinel = tmp_path / "pwned"
    flame = _good_flame(tmp_path, monkeypatch)
    evil = OsSystem(sentinel)
    emb = tmp_path / kind
    faces = np.arange(51, dtype=np.uint32)
    if kind == "landmark_embedding.npy":
        np.save(emb, np.array({"full_lmk_faces_idx": evil,
                               "full_lmk_bary_coords": np.full((68, 3), 1 / 3)}),
                allow_pickle=True)
    elif kind == "flame_static_embedding.pkl":
        emb.write_bytes(pickle.dumps({"lmk_face_idx": faces, "lmk_b_coords": [evil]}, 2))
    else:
        with open(tmp_path / "flame_static_embedding.pkl", "wb") as fh:
            pickle.dump({"lmk_face_idx": faces, "lmk_b_coords": np.full((51, 3), 1 / 3)}, fh)
        np.save(emb, np.array([{"lmk_face_idx": np.zeros((79, 17), np.int64),
                                "lmk_b_coords": evil}], dtype=object)[0:1].reshape(()),
                allow_pickle=True)
    with pytest.raises(ModelFileError) as exc:
        load_model(flame)  # found beside the model
    _one_line(exc, emb, "os.system")
    with pytest.raises(ModelFileError):
        load_flame(flame, embedding=emb if kind != "flame_dynamic_embedding.npy" else None,
                   dynamic_embedding=emb if kind == "flame_dynamic_embedding.npy" else None)
    assert not sentinel.exists()


def test_npy_object_array_and_raw_payload(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([1, OsSystem(sentinel)], dtype=object), allow_pickle=True)
    with pytest.raises(safe_pickle.RefusedGlobal, match="os.system"):
        safe_pickle.read_npy(path, unpickle=True)
    with pytest.raises(safe_pickle.PickleDataError, match="pickle-free"):
        safe_pickle.read_npy(path)  # without unpickle=True nothing is unpickled at all
    with pytest.raises(ModelFileError, match="not a readable .npy"):
        read_landmark_ids(path)
    assert not sentinel.exists()


def _facescape(tmp_path: Path, **extra: np.ndarray) -> Path:
    core, tri, uv, lm = make_bilinear_core()
    path = write_facescape(tmp_path / "facescape_bm.npz", core, tri, uv, lm, np.ones(5),
                           np.ones(5))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, **extra})
    return path


def test_facescape_npz_with_pickled_member(tmp_path):
    """A pickled member facefit reads is unpickled by the allow-list (refused); one it never
    reads (FaceScape's own files hold pickled dicts such as ``sym_dict``) is never touched."""
    sentinel = tmp_path / "pwned"
    evil = np.array([OsSystem(sentinel)], dtype=object)
    path = _facescape(tmp_path, id_mean=evil)
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    _one_line(exc, path, "os.system")
    path = _facescape(tmp_path, sym_dict=evil)
    assert load_model(path).num_shape == 5
    assert not sentinel.exists()


def test_facefit_npz_stays_pickle_free(tmp_path):
    sentinel = tmp_path / "pwned"
    path = save_model(make_model(), tmp_path / "m.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mean"] = np.array([OsSystem(sentinel)], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="member 'mean' holds pickled objects"):
        load_model(path)
    assert not sentinel.exists()


def test_allowed_globals_cannot_be_misused(tmp_path):
    """Allowed names used in ways no model file does: refused before numpy allocates."""
    def reduce_to(*value):
        class R:
            def __reduce__(self):
                return value
        return pickle.dumps(R(), protocol=2)

    from numpy._core.multiarray import _reconstruct

    cases = {
        "ndarray called": reduce_to(np.ndarray, ((10**6, 10**6),)),
        "reconstruct other type": reduce_to(_reconstruct, (np.dtype, (0,), b"b")),
        "huge shape, little data": reduce_to(_reconstruct, (np.ndarray, (0,), b"b"),
                                             (1, (10**7, 10**7), np.dtype("f8"), False,
                                              b"\0" * 8)),
        "huge object array": reduce_to(_reconstruct, (np.ndarray, (0,), b"b"),
                                       (1, (10**12,), np.dtype("O"), False, [1])),
        "codecs misuse": reduce_to(__import__("_codecs").encode, ("x", "rot13")),
    }
    for name, data in cases.items():
        with pytest.raises(safe_pickle.PickleDataError):
            safe_pickle.loads(data)
        assert name


def test_cli_exit_4_with_one_line(tmp_path, monkeypatch, capsys):
    """``facefit model info`` and ``facefit reconstruct --model`` on the malicious FLAME
    pickle: exit code 4, one line naming the file and the refused global, nothing run."""
    from PIL import Image

    sentinel = tmp_path / "pwned"
    data = _flame_dict(monkeypatch, OsSystem(sentinel), "value")
    evil = tmp_path / "evil_flame.pkl"
    evil.write_bytes(pickle.dumps(data, protocol=2))
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (128, 100, 90)).save(photo)
    want = f"{evil}: pickle refers to os.system, which a model file never needs"
    assert main(["model", "info", str(evil)]) == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith(want)
    assert main(["reconstruct", str(photo), "-o", str(tmp_path / "out"), "--model",
                 str(evil), "-q"]) == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith(want)
    assert not sentinel.exists()


def test_memo_index_bomb_costs_nothing():
    """Nine bytes naming memo slot 2**24: CPython's C unpickler would allocate and clear a
    256 MB memo array (1 GB for 2**26); the safe unpickler's memo is a dict."""
    import struct
    import time

    data = b"\x80\x02N" + b"r" + struct.pack("<I", 2**24) + b"."  # None, LONG_BINPUT, STOP
    t0 = time.perf_counter()
    assert safe_pickle.loads(data) is None
    assert time.perf_counter() - t0 < 0.3


def test_a_pickle_cannot_change_the_unpickler_for_the_next_file():
    """``BUILD`` with attribute state on the objects the allow-list hands out: refused, or
    confined to that pickle's own fresh classes."""
    for glob in (b"cnumpy._core.multiarray\n_reconstruct\n", b"c_codecs\nencode\n",
                 b"c__builtin__\nset\n"):
        data = glob + b"(N}S'__call__'\nNstb."  # BUILD (None, {'__call__': None})
        with pytest.raises(safe_pickle.PickleDataError):
            safe_pickle.loads(data)
    poisoned = safe_pickle.loads(b"cnumpy\nndarray\n(N}S'marker'\nI1\nstb.")
    assert poisoned.marker == 1  # its own class only
    again = safe_pickle.loads(b"cnumpy\nndarray\n.")
    assert not hasattr(again, "marker")
    arr = safe_pickle.loads(pickle.dumps(np.arange(3.0), protocol=2))
    np.testing.assert_array_equal(arr, [0.0, 1.0, 2.0])
