"""Load any supported morphable model file into a `MorphableModel`, and save facefit's format.

``load_model(path)`` picks the reader from the suffix, or from the file's first bytes when
the suffix is unknown:

========================  ==========================================================
``.npz``                  facefit's own format (`io_npz`) or a FaceScape bilinear model
                          (`io_facescape`, recognised by its ``shape_bm_core`` key)
``.mat``                  Basel Face Model 2009 (`io_bfm.load_bfm2009`)
``.h5`` / ``.hdf5``       Basel Face Model 2017 / 2019 (`io_bfm.load_bfm2017`)
``.pkl``                  FLAME (`io_flame.load_flame`)
``.bin``                  eos / Surrey Face Model cereal archive (`io_sfm.load_sfm`)
folder                    ICT-FaceKit ``FaceXModel/`` (`io_ict.load_ict`)
========================  ==========================================================

Every reader reports a wrong or truncated file with one `ModelFileError` line that names
the file and the missing key or field. No reader runs code from a file: pickles (FLAME,
landmark embeddings, pickled ``.npz`` members) go through the allow-list unpickler of
`facefit.io.safe_pickle`, which refuses any other global with ``pickle refers to
MODULE.NAME, which a model file never needs``; array sizes announced by headers are checked
against the bytes present before anything is allocated. `load_model` finally checks that
every vertex id (triangles, landmarks, mirror map) is in range and every vertex value is
finite, and turns any other failure of a reader on a malformed file into a `ModelFileError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from facefit.io.safe_pickle import PickleDataError, read_npy, read_npz
from facefit.model import io_bfm, io_facescape, io_flame, io_ict, io_npz, io_sfm
from facefit.model.io_common import ModelFileError, PathLike
from facefit.model.morphable_model import MorphableModel

__all__ = ["ModelFileError", "PathLike", "load_model", "read_landmark_ids", "save_model",
           "sniff_format", "validate_model"]

_MAGIC = (
    (b"PK\x03\x04", ".npz"),
    (b"\x89HDF\r\n\x1a\n", ".h5"),
    (b"MATLAB", ".mat"),
)


def sniff_format(path: PathLike) -> str:
    """The reader suffix for ``path``: its own suffix if known, else guessed from its bytes."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".hdf5":
        return ".h5"
    if suffix in (".npz", ".mat", ".h5", ".pkl", ".bin"):
        return suffix
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ModelFileError(p, f"cannot read file ({exc.strerror})") from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:1] == b"\x80" or head[:1] == b"(":
        return ".pkl"
    raise ModelFileError(p, "unknown model format: expected .npz, .mat, .h5, .pkl or .bin")


def read_landmark_ids(path: PathLike) -> np.ndarray:
    """68 iBUG vertex ids (0-based) from a ``.npy``, a plain list of ids, or an eos-style
    ``[landmark_mappings]`` file that defines all 68 points."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        try:
            ids = read_npy(p).astype(np.int64).ravel()
        except (PickleDataError, OSError, ValueError, TypeError) as exc:
            raise ModelFileError(p, f"not a readable .npy of vertex ids ({exc})") from None
    else:
        text = p.read_text(encoding="utf-8", errors="replace")
        if "landmark_mappings" in text or "landmarkMappings" in text:
            mapping, _ = io_sfm.read_landmark_mapping(p)
            missing = sorted(set(range(1, 69)) - set(mapping))
            if missing:
                raise ModelFileError(p, f"landmark mapping lacks iBUG point(s) {missing[:5]}")
            ids = np.array([mapping[i] for i in range(1, 69)], np.int64)
        else:
            ids = np.array([int(t) for t in text.replace(",", " ").split()], np.int64)
    if ids.size != 68:
        raise ModelFileError(p, f"expected 68 landmark vertex ids, found {ids.size}")
    return ids


def load_model(path: PathLike, landmarks: PathLike | None = None,
               **options: object) -> MorphableModel:
    """Load a morphable model file of any supported format (see module docstring).

    ``landmarks`` (a file of 68 vertex ids, see `read_landmark_ids`) sets the ``ibug68``
    set, e.g. for BFM 2017 whose file has none. Other ``options`` go to the format's reader
    (``landmark_mapping=`` for eos ``.bin``, ``embedding=`` for FLAME, ``expression=`` for
    BFM 2009).
    """
    p = Path(path)
    try:
        model = _load(p, **options)
    except (ModelFileError, MemoryError, ImportError, NameError, AssertionError):
        raise  # MemoryError: a reader allocated without checking (a bug, never hidden)
    except PickleDataError as exc:
        raise ModelFileError(p, str(exc)) from None
    except OSError as exc:
        raise ModelFileError(p, f"cannot read file ({exc.strerror or exc})") from exc
    except Exception as exc:
        # a reader tripped over inconsistent data that its own checks did not name
        detail = " ".join(str(exc).split())[:120]
        raise ModelFileError(p, f"inconsistent model data ({type(exc).__name__}"
                                f"{': ' + detail if detail else ''})") from exc
    validate_model(model, p)
    if landmarks is not None:
        ids = read_landmark_ids(landmarks)
        if ids.min() < 0 or ids.max() >= model.num_vertices:
            raise ModelFileError(landmarks, f"vertex ids outside 0..{model.num_vertices - 1}")
        model = dataclasses.replace(model, landmark_ids={**model.landmark_ids, "ibug68": ids})
    return model


def _load(p: Path, **options: object) -> MorphableModel:
    if p.is_dir():  # ICT-FaceKit FaceXModel folder (`io_ict`)
        return io_ict.load_ict(p, **options).to_morphable_model()  # type: ignore[arg-type]
    if not p.is_file():
        raise ModelFileError(p, "file not found")
    kind = sniff_format(p)
    if kind == ".npz":
        try:
            with read_npz(p) as z:
                keys = set(z.files)
        except PickleDataError as exc:  # zip errors, truncated files
            raise ModelFileError(p, str(exc)) from None
        if "shape_bm_core" in keys:
            return io_facescape.load_facescape(p, **options)  # type: ignore[arg-type]
        return io_npz.load_npz(p)
    if kind == ".mat":
        return io_bfm.load_bfm2009(p, **options)  # type: ignore[arg-type]
    if kind == ".h5":
        return io_bfm.load_bfm2017(p)
    if kind == ".pkl":
        return io_flame.load_flame(p, **options).model  # type: ignore[arg-type]
    return io_sfm.load_sfm(p, **options)  # type: ignore[arg-type]


def validate_model(model: MorphableModel, path: PathLike) -> None:
    """Raise `ModelFileError` unless every vertex id of ``model`` (triangles, landmark sets,
    mirror map) is in 0..V-1 and its mean and bases are finite."""
    v = model.num_vertices
    if v == 0:
        raise ModelFileError(path, "model has no vertices")
    ids = {"triangles": model.triangles, "mirror_ids": model.mirror_ids,
           **{f"landmark set '{k}'": np.asarray(i) for k, i in model.landmark_ids.items()}}
    for what, arr in ids.items():
        if arr.size and (arr.min() < 0 or arr.max() >= v):
            raise ModelFileError(path, f"{what} has vertex ids outside 0..{v - 1}")
    arrays = {"mean": model.mean, "shape basis": model.shape_basis,
              "expression basis": model.expression_basis}
    for what, arr in arrays.items():
        if not np.isfinite(arr).all():
            raise ModelFileError(path, f"{what} has non-finite values (NaN or infinity)")


def save_model(model: MorphableModel, path: PathLike) -> Path:
    """Write ``model`` in facefit's ``.npz`` format (the only writable format); returns the path."""
    p = Path(path)
    if p.suffix.lower() != ".npz":
        raise ModelFileError(p, "models are saved as facefit .npz; use a .npz output name")
    return io_npz.save_npz(model, p)
