"""Read a torch state dict (tensors by name) into numpy arrays without torch, and without
running code from the file.

Both of torch's formats are read: the zip archive of ``torch.save`` since torch 1.6
(``*/data.pkl`` plus one raw file per storage under ``*/data/``) and the legacy stream (magic
number, protocol, system info, the pickled object, the storage keys, then each storage's
element count and raw bytes), which the MTCNN weights of ``facenet-pytorch`` use. The pickles
are read by a restricted unpickler that resolves only the handful of names a state dict
refers to (an ``OrderedDict``, tensor rebuilding and storage types); anything else (a
pickled function or class that would run on loading) is refused with `StateDictError`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StateDictError", "read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
           "BFloat16Storage": None}


class StateDictError(ValueError):
    """The file is not a plain torch state dict of tensors."""


class _StorageType:
    def __init__(self, name: str) -> None:
        if _DTYPES.get(name) is None:
            raise StateDictError(f"unsupported tensor storage {name}")
        self.dtype = np.dtype(_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple,
                    *_: Any) -> np.ndarray:
    """A tensor as a (copied) numpy view of its storage."""
    if not size:
        return np.array(storage[offset])
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.array(view)


_REBUILD = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: io.BufferedIOBase, load_storage=None,  # noqa: ANN001
                 rebuild=_rebuild_tensor) -> None:  # noqa: ANN001
        super().__init__(fh)
        self._load_storage = load_storage
        self._rebuild = rebuild

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in _REBUILD:
            return self._rebuild
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise StateDictError(f"refuses to load {module}.{name} (not part of a state dict)")

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise StateDictError("unexpected tensor data")
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise StateDictError(f"unexpected persistent id {pid!r:.60}")
        storage_type, key = pid[1], str(pid[2])
        if isinstance(storage_type, str):  # newer files name the dtype
            storage_type = _StorageType(storage_type)
        return self._load_storage(key, storage_type.dtype)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} of a torch state dict file (either format); StateDictError (a
    ValueError naming the file) for anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
        obj = _read_zip(data) if data[:4] == b"PK\x03\x04" else _read_legacy(data)
    except StateDictError as e:
        raise StateDictError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error,
            zipfile.BadZipFile, IndexError, TypeError, AttributeError) as e:
        raise StateDictError(f"{path}: not a torch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise StateDictError(f"{path}: not a torch state dict of tensors")
    return dict(obj)


def _read_zip(data: bytes) -> Any:
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    pkl = next(n for n in names if n.endswith("/data.pkl"))
    root = pkl[: -len("data.pkl")]

    def load(key: str, dtype: np.dtype) -> np.ndarray:
        return np.frombuffer(zf.read(f"{root}data/{key}"), dtype=dtype)

    return _Unpickler(io.BytesIO(zf.read(pkl)), load).load()


def _read_legacy(data: bytes) -> Any:
    fh = io.BytesIO(data)
    plain = _Unpickler(fh)
    if plain.load() != _LEGACY_MAGIC:
        raise StateDictError("not a torch file (bad magic number)")
    plain.load()  # protocol version
    plain.load()  # system info (byte order, type sizes)
    wanted: dict[str, np.dtype] = {}
    arrays: dict[str, np.ndarray] = {}

    class Lazy:  # storages come after the object: fill them in afterwards
        def __init__(self, key: str) -> None:
            self.key = key

    def note(key: str, dtype: np.dtype) -> Any:
        wanted[key] = dtype
        return Lazy(key)

    rebuilt: list[tuple[str, tuple]] = []

    def lazy_rebuild(storage: Lazy, *args: Any) -> tuple:
        rebuilt.append((storage.key, args))
        return ("tensor", len(rebuilt) - 1)

    obj = _Unpickler(fh, note, lazy_rebuild).load()
    keys = _Unpickler(fh).load()
    for key in keys:
        (numel,) = struct.unpack("<q", fh.read(8))
        dtype = wanted[str(key)]
        arrays[str(key)] = np.frombuffer(fh.read(numel * dtype.itemsize), dtype=dtype)
    tensors = [_rebuild_tensor(arrays[k], *a) for k, a in rebuilt]
    return collections.OrderedDict(
        (name, tensors[v[1]] if isinstance(v, tuple) and v[:1] == ("tensor",) else v)
        for name, v in obj.items())
