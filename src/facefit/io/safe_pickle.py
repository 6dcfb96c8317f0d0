"""Read pickles, ``.npy`` and ``.npz`` files from the internet without running their code.

A pickle is a program: its ``GLOBAL`` opcodes name any importable callable and ``REDUCE``
calls it, so ``pickle.load`` on a downloaded model file (FLAME's ``generic_model.pkl``, a
landmark embedding, a FaceScape ``.npz`` with pickled members) can run ``os.system``.
`SafeUnpickler` resolves every global through `ALLOWED`, an explicit list of exactly what
real model files need, and raises `RefusedGlobal` for anything else *before* anything is
called (the check runs when the ``GLOBAL`` opcode is read, before any ``REDUCE``).

What the allow-list admits and why (Python 2 names such as ``__builtin__`` are first mapped
to their Python 3 names, as `pickle` does):

=====================================================  ====================================
global                                                 why a model file needs it
=====================================================  ====================================
``numpy.core.multiarray._reconstruct`` (numpy 1.x)     every pickled ``ndarray`` (FLAME,
``numpy._core.multiarray._reconstruct`` (numpy 2.x)    3DDFA's ``param_whitening.pkl``)
``numpy.ndarray``                                      the array type passed to it
``numpy.dtype``                                        every array's dtype
``numpy.core.multiarray.scalar`` (and ``_core``)       numpy scalars (``np.float64(1)``)
``numpy.core.numeric._frombuffer`` (and ``_core``)     arrays pickled with protocol 5
``_codecs.encode``                                     ``bytes`` in protocol-2 pickles
                                                       written by Python 3 (latin-1 only)
``builtins.set`` / ``builtins.frozenset``              chumpy's pickled state
                                                       (``_dirty_vars`` is a set)
``chumpy.*`` (any class)                               FLAME's arrays are ``chumpy.ch.Ch``
                                                       objects: mapped to `StandIn`
                                                       classes that only keep their state
``scipy.sparse.*`` ``{csc,csr,coo}_{matrix,array}``    FLAME's ``J_regressor``: mapped to
                                                       `SparseStandIn` (rebuilt by
                                                       `SparseStandIn.toarray` after checks)
=====================================================  ====================================

Nothing else: no ``copyreg`` (protocol 0/1 object pickles: model files are protocol >= 2),
no ``builtins.getattr``/``eval``/``exec``, no scipy or chumpy code at all (the stand-ins are
plain classes defined here). The numpy callables are wrapped so that an array can only be
built from data that is present in the file: a pickled shape whose element count does not
match its data is refused before numpy allocates, and ``numpy.ndarray`` itself cannot be
called. The callables are slot-less objects, and the stand-in classes and the ``ndarray``
type are made fresh for each reference, so a pickle cannot change them (``BUILD`` with
attribute state) for a later file.

`read_npy` / `read_npz` read ``.npy`` / ``.npz`` (``numpy.save`` / ``savez``) without numpy's
``allow_pickle``: the header is parsed here, an element count that exceeds the bytes
present is refused before allocation, a compressed member over 64 MB that claims to expand
more than 100:1 is refused as a decompression bomb, and object arrays (pickled payloads,
e.g. FLAME's ``landmark_embedding.npy``) are read only when asked for, through
`SafeUnpickler`.

Every problem is a `PickleDataError` (a `ValueError`) whose message is one line without the
path; callers add the path (`facefit.model.load.ModelFileError`).
"""

from __future__ import annotations

import _compat_pickle
import ast
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

PathLike = str | os.PathLike[str]
NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 100_000
# deflate cannot expand more than about 1032:1; a member claiming more is corrupt
_MAX_DEFLATE_RATIO = 1032
# members over 64 MB that claim to expand more than 100:1 are refused as bombs (float model
# data compresses about 1.1:1; small masks and index arrays may compress far more)
_BOMB_BYTES, _BOMB_RATIO = 64 << 20, 100


class PickleDataError(ValueError):
    """A pickle / ``.npy`` / ``.npz`` that is refused or unreadable; the message is one line."""

    def __init__(self, problem: str) -> None:
        super().__init__(" ".join(str(problem).split()))


class RefusedGlobal(PickleDataError, pickle.UnpicklingError):
    """The pickle names a global outside `ALLOWED`; ``.refused`` is ``"module.name"``."""

    def __init__(self, module: str, name: str) -> None:
        # os.system pickles as posix.system (nt.system on Windows): name it as users know it
        module = "os" if module in ("posix", "nt") else module
        self.refused = f"{module}.{name}"
        super().__init__(f"pickle refers to {self.refused}, which a model file never needs")


# ---- stand-ins for classes that are never imported -----------------------------------------

class StandIn:
    """Instance of a class a pickle names but facefit never imports (e.g. ``chumpy.ch.Ch``):
    keeps the pickled state and nothing else. ``pickled_class`` is ``"module.Name"``."""

    pickled_class = "?"
    args: tuple[object, ...]
    state: dict[str, object]

    def __new__(cls, *args: object, **kwargs: object) -> StandIn:
        obj = super().__new__(cls)
        obj.args, obj.state = args, {}
        return obj

    def __setstate__(self, state: object) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}

    def __repr__(self) -> str:
        return f"<stand-in for {self.pickled_class}>"


class SparseStandIn(StandIn):
    """A pickled ``scipy.sparse`` matrix (``csc``/``csr``/``coo``), rebuilt on demand."""

    def sparse_shape(self) -> tuple[int, int]:
        """(rows, cols) from the pickled state (``_shape`` in new scipy, ``shape`` in old)."""
        shape = self.state.get("_shape", self.state.get("shape"))
        if (not isinstance(shape, tuple) or len(shape) != 2
                or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape)):
            raise PickleDataError(f"{self.pickled_class} without a valid 2D shape")
        return int(shape[0]), int(shape[1])

    def toarray(self, max_elements: int = 50_000_000) -> np.ndarray:
        """The dense matrix; refuses more than ``max_elements`` entries and inconsistent
        index arrays (checked before scipy sees them)."""
        import scipy.sparse

        rows, cols = self.sparse_shape()
        if rows * cols > max_elements:
            raise PickleDataError(f"{self.pickled_class} of shape ({rows}, {cols}) is too "
                                  "large to expand")
        kind = self.pickled_class.rsplit(".", 1)[-1][:3]
        try:
            data = np.asarray(self.state["data"])
            if kind == "coo":
                row = np.asarray(self.state.get("row", self.state.get("coords", [[]])[0]))
                col = np.asarray(self.state.get("col", self.state.get("coords", [[], []])[1]))
                if not (data.ndim == row.ndim == col.ndim == 1
                        and data.size == row.size == col.size):
                    raise PickleDataError(f"{self.pickled_class} with inconsistent arrays")
                if row.size and (row.min() < 0 or row.max() >= rows or col.min() < 0
                                 or col.max() >= cols):
                    raise PickleDataError(f"{self.pickled_class} index outside its shape")
                m = scipy.sparse.coo_matrix((data, (row, col)), shape=(rows, cols))
            else:
                indices = np.asarray(self.state["indices"])
                indptr = np.asarray(self.state["indptr"])
                major, minor = (cols, rows) if kind == "csc" else (rows, cols)
                if (indptr.ndim != 1 or indptr.size != major + 1 or indices.ndim != 1
                        or data.ndim != 1 or data.size != indices.size
                        or (indptr.size and (indptr[0] != 0 or indptr[-1] != data.size
                                             or np.any(np.diff(indptr) < 0)))
                        or (indices.size and (indices.min() < 0 or indices.max() >= minor))):
                    raise PickleDataError(f"{self.pickled_class} with inconsistent arrays")
                cls = scipy.sparse.csc_matrix if kind == "csc" else scipy.sparse.csr_matrix
                m = cls((data, indices, indptr), shape=(rows, cols))
        except PickleDataError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PickleDataError(f"{self.pickled_class} with unusable state "
                                  f"({type(exc).__name__})") from None
        return np.asarray(m.toarray())


# ---- guarded numpy callables -----------------------------------------------------------------

class _ArrayType:
    """What ``numpy.ndarray`` resolves to: only `_Reconstruct` accepts it; calling it fails."""

    def __new__(cls, *args: object, **kwargs: object) -> _ArrayType:
        raise PickleDataError("pickle calls numpy.ndarray directly")


class _GuardedArray(np.ndarray):
    """An ndarray whose ``__setstate__`` checks the pickled shape against the pickled data."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise PickleDataError("pickled array state is not a 4- or 5-tuple")
        shape, dtype, _, raw = state[-4:]
        if not isinstance(shape, tuple) or not all(
                isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
            raise PickleDataError("pickled array has an invalid shape")
        if not isinstance(dtype, np.dtype):
            raise PickleDataError("pickled array has no dtype")
        count = 1
        for n in shape:
            count *= int(n)
        if dtype.hasobject:
            if not isinstance(raw, list) or len(raw) != count:
                raise PickleDataError(f"pickled object array of shape {tuple(shape)} "
                                      "does not match its data")
        elif not isinstance(raw, (bytes, bytearray, str)) or len(raw) != count * dtype.itemsize:
            raise PickleDataError(f"pickled array of shape {tuple(shape)} {dtype} "
                                  f"does not match its {len(raw)} bytes of data")
        np.ndarray.__setstate__(self, state)


class _Guard:
    """Base of the callables the unpickler hands out: no attributes can be set on them."""

    __slots__ = ()


class _Reconstruct(_Guard):
    """``numpy.core.multiarray._reconstruct``: an empty array whose state is checked later."""

    __slots__ = ()

    def __call__(self, subtype: object, shape: object = (0,), dtype: object = b"b") -> Any:
        if not (isinstance(subtype, type) and issubclass(subtype, _ArrayType)):
            raise PickleDataError("numpy _reconstruct called with a type other than ndarray")
        return np.ndarray.__new__(_GuardedArray, (0,), np.uint8)


class _Scalar(_Guard):
    """``numpy.core.multiarray.scalar``: a numpy scalar from exactly ``itemsize`` bytes."""

    __slots__ = ()

    def __call__(self, dtype: object, data: object = None) -> Any:
        if not isinstance(dtype, np.dtype):
            raise PickleDataError("numpy scalar without a dtype")
        if dtype.hasobject:
            return data
        if isinstance(data, str):
            data = data.encode("latin1")
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise PickleDataError(f"numpy scalar of {dtype} with the wrong number of bytes")
        return np.frombuffer(data, dtype)[0]


class _FromBuffer(_Guard):
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays), size checked first."""

    __slots__ = ()

    def __call__(self, buf: object, dtype: object, shape: object, order: object) -> Any:
        if (not isinstance(dtype, np.dtype) or dtype.hasobject
                or not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer))
                or not isinstance(shape, tuple) or order not in ("C", "F")
                or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape)):
            raise PickleDataError("unusable protocol-5 array")
        count = 1
        for n in shape:
            count *= int(n)
        if count * dtype.itemsize != memoryview(buf).nbytes:
            raise PickleDataError(f"protocol-5 array of shape {shape} does not match its data")
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


class _Latin1Encode(_Guard):
    """``_codecs.encode``, only as protocol 2 uses it for bytes: ``encode(str, 'latin1')``."""

    __slots__ = ()

    def __call__(self, text: object, encoding: object = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise PickleDataError("pickle calls _codecs.encode other than for bytes")
        return text.encode("latin1")


_SPARSE_CLASSES = frozenset(f"{k}_{t}" for k in ("csc", "csr", "coo")
                            for t in ("matrix", "array"))
_NP_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NP_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
ALLOWED: dict[tuple[str, str], object] = {
    **{(m, "_reconstruct"): _Reconstruct() for m in _NP_CORE},
    **{(m, "scalar"): _Scalar() for m in _NP_CORE},
    **{(m, "_frombuffer"): _FromBuffer() for m in _NP_NUMERIC},
    ("numpy", "ndarray"): _ArrayType,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _Latin1Encode(),
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}
"""(module, name) -> what the unpickler returns; ``chumpy.*`` and ``scipy.sparse.*`` are
handled by `SafeUnpickler.find_class` (stand-ins)."""


class SafeUnpickler(pickle._Unpickler):
    """Unpickler that resolves globals only through `ALLOWED` (module docstring).

    Built on the pure-Python unpickler: the C one keeps its memo in an array sized by the
    largest index a pickle names, so nine bytes (``LONG_BINPUT 2**26``) make it allocate and
    clear 1 GB; here the memo is a dict. Model pickles hold few, large opcodes (arrays), so
    the pure-Python loop costs little."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__.set``, ``copy_reg``...) as pickle itself maps them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (module, name)
        if key == ("numpy", "ndarray"):  # a fresh subclass: attributes a pickle sets on it
            return type("ndarray", (_ArrayType,), {})  # (BUILD) never reach another file
        if key in ALLOWED:
            return ALLOWED[key]
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (StandIn,), {"pickled_class": f"{module}.{name}"})
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and (
                name in _SPARSE_CLASSES):
            return type(name, (SparseStandIn,), {"pickled_class": f"{module}.{name}"})
        raise RefusedGlobal(module, name)

    def persistent_load(self, pid: object) -> Any:
        raise PickleDataError("pickle uses persistent ids, which a model file never needs")


def loads(data: bytes | bytearray | memoryview, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with `SafeUnpickler` (``latin1`` reads Python 2 pickles, as numpy
    does); arrays come back as plain ``ndarray``. Raises `PickleDataError`."""
    try:
        obj = SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
    except PickleDataError:
        raise
    except MemoryError:
        raise PickleDataError("pickle needs more memory than is available") from None
    except RecursionError:
        raise PickleDataError("pickle nested too deeply") from None
    except Exception as exc:  # UnpicklingError, EOFError, TypeError, ValueError, ...
        raise PickleDataError(f"truncated or corrupt pickle ({type(exc).__name__})") from None
    try:
        return _plain(obj, {})
    except RecursionError:
        raise PickleDataError("pickle nested too deeply") from None


def load_pickle(path: PathLike) -> Any:
    """`loads` of the whole file ``path`` (read into memory: a pickle's length fields can then
    never make the reader allocate more than the file holds)."""
    return loads(Path(path).read_bytes())


def _plain(obj: Any, seen: dict[int, Any]) -> Any:
    """``obj`` with every `_GuardedArray` replaced by a plain ndarray view (in place where
    the container is mutable)."""
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, np.ndarray):
        out = obj.view(np.ndarray) if type(obj) is not np.ndarray else obj
        seen[key] = out
        if out.dtype.hasobject:
            for idx in np.ndindex(out.shape):
                item = out[idx]
                new = _plain(item, seen)
                if new is not item:
                    out[idx] = new
        return out
    seen[key] = obj
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _plain(obj[k], seen)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            obj[i] = _plain(item, seen)
    elif isinstance(obj, tuple):
        out = tuple(_plain(item, seen) for item in obj)
        seen[key] = out
        return out
    elif isinstance(obj, StandIn):
        obj.state = _plain(obj.state, seen)
        obj.args = _plain(obj.args, seen)
    return obj


# ---- .npy / .npz -----------------------------------------------------------------------------

def _read_exact(fh: BinaryIO, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise PickleDataError(f"truncated .npy ({what})")
    return data


def read_npy_header(fh: BinaryIO) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, fortran_order, header bytes) of the ``.npy`` stream at ``fh``.

    The header dict is parsed with `ast.literal_eval` (literals only), as numpy does."""
    head = _read_exact(fh, 8, "magic")
    if not head.startswith(NPY_MAGIC):
        raise PickleDataError("not a .npy array (bad magic)")
    major = head[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", _read_exact(fh, 2, "header length"))
        start, enc = 10, "latin1"
    elif major in (2, 3):
        (hlen,) = struct.unpack("<I", _read_exact(fh, 4, "header length"))
        start, enc = 12, "latin1" if major == 2 else "utf8"
    else:
        raise PickleDataError(f".npy format version {major} is not supported")
    if hlen > MAX_HEADER_BYTES:
        raise PickleDataError(f".npy header of {hlen} bytes is too long")
    try:
        text = _read_exact(fh, hlen, "header").decode(enc)
        d = ast.literal_eval(text)
        if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
            raise ValueError("keys")
        shape, fortran = d["shape"], d["fortran_order"]
        if not isinstance(shape, tuple) or not all(
                isinstance(n, int) and n >= 0 for n in shape) or not isinstance(fortran, bool):
            raise ValueError("shape")
        dtype = np.lib.format.descr_to_dtype(d["descr"])
    except PickleDataError:
        raise
    except Exception:  # SyntaxError, ValueError, TypeError, UnicodeDecodeError, ...
        raise PickleDataError("corrupt .npy header") from None
    return dtype, shape, fortran, start + hlen


def _npy_from_stream(fh: BinaryIO, available: int, unpickle: bool, encoding: str,
                     what: str) -> np.ndarray:
    """Array of the ``.npy`` stream ``fh`` holding ``available`` bytes in all."""
    dtype, shape, fortran, header = read_npy_header(fh)
    count = 1
    for n in shape:
        count *= n
    body = available - header
    if dtype.hasobject:
        if not unpickle:
            raise PickleDataError(f"{what} holds pickled objects (an object array); "
                                  "this format is pickle-free")
        obj = loads(_read_exact(fh, max(body, 0), "pickled data"), encoding=encoding)
        if not isinstance(obj, np.ndarray) or obj.shape != shape:
            raise PickleDataError(f"{what}: pickled payload is not the array of shape {shape} "
                                  "its header announces")
        return obj
    nbytes = count * dtype.itemsize
    if nbytes > body:
        raise PickleDataError(f"{what} header announces shape {shape} of {dtype} "
                              f"({nbytes} bytes) but only {max(body, 0)} bytes follow")
    out = np.empty(count, dtype)
    if nbytes:
        view = memoryview(out.view(np.uint8).reshape(-1))
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:min(nbytes, got + (1 << 24))])  # type: ignore[attr-defined]
            if not n:
                raise PickleDataError(f"truncated .npy data in {what}")
            got += n
    if fortran:
        return out.reshape(shape[::-1]).transpose()
    return out.reshape(shape)


def read_npy(path: PathLike, unpickle: bool = False, encoding: str = "latin1"
             ) -> np.ndarray:
    """A ``.npy`` file as an array. Object arrays need ``unpickle`` and are unpickled by
    `SafeUnpickler`; a header announcing more data than the file holds is refused before
    anything is allocated. Raises `PickleDataError` (or `OSError` if unreadable)."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        return _npy_from_stream(fh, size, unpickle, encoding, "file")


class NpzArchive:
    """Members of a ``.npz`` (zip of ``.npy``), read lazily by `read_npy`'s rules.

    ``files`` lists the keys; ``archive[key]`` reads one member (object members need
    ``unpickle`` and go through `SafeUnpickler`). Use as a context manager."""

    def __init__(self, path: PathLike, unpickle: bool = False) -> None:
        self.path = Path(path)
        self.unpickle = unpickle
        self._size = self.path.stat().st_size
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, KeyError,
                struct.error, UnicodeDecodeError, NotImplementedError) as exc:
            raise PickleDataError(f"not a readable .npz archive ({type(exc).__name__})"
                                  ) from None
        self._members = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i
                         for i in infos}
        self.files = list(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __getitem__(self, key: str) -> np.ndarray:
        info = self._members[key]
        if info.compress_type == zipfile.ZIP_STORED:
            ok = info.file_size == info.compress_size <= self._size
        else:
            ok = (info.compress_size <= self._size
                  and info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024)
        if not ok:
            raise PickleDataError(f"member '{key}' claims {info.file_size} bytes, more than "
                                  "the archive can hold")
        if info.file_size > _BOMB_BYTES and info.file_size > _BOMB_RATIO * info.compress_size:
            raise PickleDataError(f"member '{key}' expands {info.compress_size} bytes to "
                                  f"{info.file_size} (a decompression bomb: model data never "
                                  f"compresses more than {_BOMB_RATIO}:1)")
        try:
            with self._zip.open(info) as fh:
                return _npy_from_stream(fh, info.file_size, self.unpickle, "latin1",
                                        f"member '{key}'")
        except PickleDataError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error,
                NotImplementedError, KeyError) as exc:
            raise PickleDataError(f"truncated or corrupt member '{key}' "
                                  f"({type(exc).__name__})") from None

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_npz(path: PathLike, unpickle: bool = False) -> NpzArchive:
    """Open a ``.npz`` as an `NpzArchive` (see there). Raises `PickleDataError`."""
    return NpzArchive(path, unpickle)
